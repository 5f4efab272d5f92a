//! Standard output for the binaries (`fleetcare`, `fleetcare-agent`) that ends quietly when
//! its reader goes away (`fleetcare … | head`), as a command-line tool should, instead of
//! panicking on a broken pipe.

use std::io::Write;

/// Write to standard output; exit at once, successfully, if the pipe is closed.
pub fn write(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        let _ = writeln!(std::io::stderr(), "writing to standard output: {e}");
        std::process::exit(1);
    }
}

/// `print!` that ends quietly on a closed pipe.
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::out::write(format_args!($($t)*)) };
}

/// `println!` that ends quietly on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => { $crate::out::write(format_args!("\n")) };
    ($($t:tt)*) => { $crate::out::write(format_args!("{}\n", format_args!($($t)*))) };
}
