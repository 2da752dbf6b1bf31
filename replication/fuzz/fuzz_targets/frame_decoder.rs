//! Arbitrary bytes into every decoder of the wire protocol: no panic, no
//! allocation beyond the frame limit (a huge announced length is refused
//! before anything is allocated).
#![no_main]

use hsfs_replication::wire::{self, ChunkData, ChunkPut, IntentReply, LogFrame, Open, ToLeader, ToWorker};
use libfuzzer_sys::fuzz_target;

const MAX: u32 = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let _ = wire::decode::<Open>(data, MAX);
    let _ = wire::decode::<ToLeader>(data, MAX);
    let _ = wire::decode::<ToWorker>(data, MAX);
    let _ = wire::decode::<IntentReply>(data, MAX);
    let _ = wire::decode::<ChunkPut>(data, MAX);
    let _ = wire::decode::<LogFrame>(data, MAX);
    let _ = wire::decode::<ChunkData>(data, MAX);
});
