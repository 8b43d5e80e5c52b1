//! Profiling helper: `cargo run --release -p nano-shuffle --example shuffle_file -- IN OUT MEMORY [THREADS] [TMPDIR]`.
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: shuffle_file IN OUT MEMORY_BYTES [THREADS] [TMPDIR]");
        std::process::exit(2);
    }
    let opts = nano_shuffle::Options {
        memory: args[3].parse().expect("memory in bytes"),
        threads: args.get(4).and_then(|t| t.parse().ok()),
        tmp_dir: args.get(5).filter(|d| !d.is_empty()).map(PathBuf::from),
        seed: 1,
        ..Default::default()
    };
    let start = std::time::Instant::now();
    match nano_shuffle::shuffle_files(&[PathBuf::from(&args[1])], args[2].as_ref(), &opts) {
        Ok(s) => eprintln!("{s:?} in {:.2} s", start.elapsed().as_secs_f64()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
