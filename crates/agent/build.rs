//! Links the agent binary with the code an idle agent runs packed together at the start of its
//! text (`idle.ld`, made by `scripts/agent-idle-layout`): the kernel maps 64 KiB around every
//! page fault, so idle code spread over the text kept megabytes of it resident (resident.rs,
//! BENCHMARKS.md B10). The script only adds an output section in front of `.text`; GNU ld and
//! LLD both take it, and a function it names that no longer exists matches nothing.

fn main() {
    println!("cargo:rerun-if-changed=idle.ld");
    // The profile that makes idle.ld runs under valgrind, which takes only `.text` for code.
    println!("cargo:rerun-if-env-changed=FLEETCARE_AGENT_NO_IDLE_LAYOUT");
    let profiling = std::env::var_os("FLEETCARE_AGENT_NO_IDLE_LAYOUT").is_some();
    // Every Linux target links ELF with GNU ld or LLD.
    if !profiling && std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        println!("cargo:rustc-link-arg-bin=fleetcare-agent=-Wl,-T,{dir}/idle.ld");
    }
}
