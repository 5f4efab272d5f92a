#!/bin/sh
# ippeveprinter's print command: the printer jams on every job (STATE and ATTR lines on
# stderr update the printer's state reasons and attributes, as a CUPS filter's would).
echo "STATE: +media-jam-error" >&2
echo "ATTR: printer-alert=code=jam;severity=critical;group=mediaPath;groupindex=1;location=3" >&2
cat "$1" > /dev/null
exit 0
