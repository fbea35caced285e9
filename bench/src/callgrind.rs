//! Valgrind client requests, so that callgrind counts only a measured region.
//!
//! The bench binary runs under `valgrind --tool=callgrind --instr-atstart=no`:
//! the setup runs uninstrumented, [`Region::start`] switches instrumentation on
//! and zeroes the counters, and dropping the region switches it off again, so
//! the `summary:` line of the output file is the instruction count (`Ir`) of
//! the region alone. Outside valgrind the requests are no-ops (the magic
//! preamble rotates `rdi` by 128 bits in total and `xchg rbx, rbx` does nothing).

/// `VG_USERREQ_TOOL_BASE('C', 'T')` of `callgrind.h`.
const CALLGRIND_BASE: u64 = ((b'C' as u64) << 24) | ((b'T' as u64) << 16);
const ZERO_STATS: u64 = CALLGRIND_BASE + 1;
const START_INSTRUMENTATION: u64 = CALLGRIND_BASE + 4;
const STOP_INSTRUMENTATION: u64 = CALLGRIND_BASE + 5;
/// `VG_USERREQ__RUNNING_ON_VALGRIND` of `valgrind.h`.
const RUNNING_ON_VALGRIND: u64 = 0x1001;

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn client_request(default: u64, request: u64) -> u64 {
    let args: [u64; 6] = [request, 0, 0, 0, 0, 0];
    let result: u64;
    // SAFETY: the valgrind "special instruction" sequence of valgrind.h for
    // amd64. Natively it changes no register (four rotations of rdi add up
    // to 128 bits) and touches no memory; under valgrind, valgrind reads the
    // six-word argument block at rax and writes the result into rdx.
    unsafe {
        std::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            inout("rdx") default => result,
            in("rax") args.as_ptr(),
            inout("rdi") 0u64 => _,
            options(nostack),
        );
    }
    result
}

#[cfg(not(target_arch = "x86_64"))]
fn client_request(default: u64, _request: u64) -> u64 {
    default
}

/// Whether the process runs under valgrind.
pub fn running_on_valgrind() -> bool {
    client_request(0, RUNNING_ON_VALGRIND) > 0
}

/// A measured region: callgrind collects only while one is alive.
pub struct Region(());

impl Region {
    pub fn start() -> Self {
        client_request(0, START_INSTRUMENTATION);
        client_request(0, ZERO_STATS);
        Region(())
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        client_request(0, STOP_INSTRUMENTATION);
    }
}
