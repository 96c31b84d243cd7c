use lifewatch_sim::*;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let accounts: u64 = a[1].parse().unwrap();
    let faults = a[2] == "1";
    let out = a.get(3).cloned();
    let t = std::time::Instant::now();
    let mut bytes = 0u64;
    let mut sink: Box<dyn std::io::Write> = match out {
        Some(p) => Box::new(std::fs::File::create(p).unwrap()),
        None => Box::new(std::io::sink()),
    };
    let mut sim = Simulator::new(SimulateOptions { seed: 42, accounts, faults, ..Default::default() });
    let mut n = 0u64;
    for l in sim.by_ref() {
        bytes += l.line.len() as u64 + 1;
        n += 1;
        sink.write_all(l.line.as_bytes()).unwrap();
        sink.write_all(b"\n").unwrap();
    }
    let el = t.elapsed().as_secs_f64();
    let s = sim.stats();
    eprintln!(
        "lines {n} {:?} per-account {:.2} bytes/line {:.1} {:.0} lines/s",
        s,
        s.events as f64 / accounts as f64,
        bytes as f64 / n as f64,
        n as f64 / el
    );
}
