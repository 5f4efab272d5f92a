#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fleetcare_fuzz::ddi_bodies(data);
});
