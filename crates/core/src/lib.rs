//! Fleetcare's domain, without IO: validated identities and structures ([`structure`]),
//! the diff of two structures into history events, secrets ([`secret`]) and the clock
//! ([`clock`]). Everything here is a pure function of its inputs, so it is tested with data.

pub mod clock;
pub mod limits;
pub mod secret;
pub mod structure;

pub use structure::{DeviceId, Structure, ValidationError};
