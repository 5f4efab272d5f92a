"""python-tuf's ngclient as judge of a Fleetcare center's TUF repository (tests/tuf.rs).

usage: tuf_judge.py BASE_URL TOKEN BOOTSTRAP_ROOT STATE_DIR TARGET_PATH

Refreshes the metadata (envelope type SIMPLE) with STATE_DIR as the client's trusted
metadata (kept between runs, as a device keeps it) and downloads TARGET_PATH. Prints one
line of JSON: {"ok": true, "sha256": ...} or {"ok": false, "error": ..., "kind": ...}.
The device token goes in an Authorization header through a fetcher of our own: the one
extension point ngclient documents for transport.
"""

import hashlib
import json
import os
import sys

import urllib3
from tuf.api import exceptions
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig
from tuf.ngclient.config import EnvelopeType


class BearerFetcher(FetcherInterface):
    def __init__(self, token):
        self._http = urllib3.PoolManager(
            headers={"Authorization": f"Bearer {token}"},
            timeout=urllib3.Timeout(10),
            retries=False,
        )

    def _fetch(self, url):
        r = self._http.request("GET", url, preload_content=False)
        if r.status >= 400:
            r.close()
            raise exceptions.DownloadHTTPError(f"HTTP {r.status}", r.status)
        return r.stream(65536)


def main():
    base, token, bootstrap, state, target = sys.argv[1:6]
    metadata = os.path.join(state, "metadata")
    downloads = os.path.join(state, "downloads")
    os.makedirs(metadata, exist_ok=True)
    os.makedirs(downloads, exist_ok=True)
    with open(bootstrap, "rb") as f:
        root = f.read()
    try:
        updater = Updater(
            metadata,
            f"{base}/device/v1/tuf/metadata/",
            downloads,
            f"{base}/device/v1/tuf/targets/",
            fetcher=BearerFetcher(token),
            config=UpdaterConfig(envelope_type=EnvelopeType.SIMPLE),
            bootstrap=root,
        )
        updater.refresh()
        info = updater.get_targetinfo(target)
        if info is None:
            print(json.dumps({"ok": False, "kind": "NotFound", "error": target}))
            return
        path = updater.download_target(info)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        print(json.dumps({"ok": True, "sha256": digest, "custom": info.custom}))
    except Exception as e:  # every refusal is reported, not raised
        print(json.dumps({"ok": False, "kind": type(e).__name__, "error": str(e)}))


main()
