//! Fleetcare's domain, without IO: validated identities and structures ([`structure`]),
//! the diff of two structures into history events, secrets ([`secret`]), the clock
//! ([`clock`]), every input limit ([`limits`]) and the layered config reader ([`config`]).
//! Everything here is a pure function of its inputs (secrets draw from the OS random
//! source), so it is tested with data.

pub mod clock;
pub mod config;
pub mod limits;
pub mod meters;
pub mod secret;
pub mod structure;

pub use structure::{DeviceId, Structure, ValidationError};
