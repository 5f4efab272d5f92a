//! Devices and their links to the center: the device protocol over HTTP and MQTT, the
//! connections this instance holds, and the operator's view of devices.

pub mod api;
pub mod hub;
pub mod link;
pub mod mqtt;
pub mod protocol;
pub mod report;
