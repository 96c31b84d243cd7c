//! The end-to-end baseline of `benches/replay.sh`: read a JSON Lines file and
//! decode every line with serde_json into an owned, typed envelope
//! (attributes as `String`s, `time` as a chrono instant, `data` as a
//! `serde_json::Value`), and nothing else. Prints the number decoded.
//!
//! `cargo run --release --example decode_baseline -- FILE`

use std::io::BufRead;

#[path = "../benches/common/envelope.rs"]
mod envelope;
use envelope::OwnedEnvelope;

fn main() -> std::io::Result<()> {
    let path = std::env::args().nth(1).ok_or_else(|| std::io::Error::other("usage: decode_baseline FILE"))?;
    let reader = std::io::BufReader::with_capacity(256 * 1024, std::fs::File::open(path)?);
    let (mut decoded, mut failed) = (0u64, 0u64);
    for line in reader.split(b'\n') {
        match serde_json::from_slice::<OwnedEnvelope>(&line?) {
            Ok(_) => decoded += 1,
            Err(_) => failed += 1,
        }
    }
    eprintln!("decode_baseline: {decoded} decoded, {failed} failed");
    Ok(())
}
