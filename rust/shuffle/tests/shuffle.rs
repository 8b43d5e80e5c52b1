//! End-to-end tests of the shuffler: multiset preserved, determinism across threads, uniformity
//! (chi-square over many seeds, through the two-pass path), recursion, clean-up on error.
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use nano_shuffle::{shuffle_files, Error, Options, RecordFormat};

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, data).unwrap();
    p
}

fn lines_of(data: &[u8]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = data
        .split_inclusive(|&b| b == b'\n')
        .map(|l| l.to_vec())
        .collect();
    v.sort();
    v
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    v.sort();
    v
}

fn numbered_lines(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("record {i} {}\n", "x".repeat(i % 37)))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn lines_are_permuted_not_lost_for_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let data = numbered_lines(5000);
    let input = write(dir.path(), "in.txt", &data);
    for pile_bytes in [None, Some(7000)] {
        let out = dir.path().join("out.txt");
        let opts = Options {
            seed: 3,
            pile_bytes,
            ..Options::default()
        };
        let summary = shuffle_files(std::slice::from_ref(&input), &out, &opts).unwrap();
        let shuffled = fs::read(&out).unwrap();
        assert_eq!(summary.records, 5000);
        assert_eq!(summary.bytes, data.len() as u64);
        assert_ne!(
            shuffled, data,
            "a shuffle of 5000 lines must move something"
        );
        assert_eq!(lines_of(&shuffled), lines_of(&data));
        assert_eq!(summary.piles > 0, pile_bytes.is_some());
    }
    assert_eq!(
        entries(dir.path()),
        ["in.txt", "out.txt"],
        "no temporary file left behind"
    );
}

#[test]
fn several_inputs_and_a_missing_final_newline() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.txt", b"one\ntwo\n\nthree");
    let b = write(dir.path(), "b.txt", b"four\n");
    let empty = write(dir.path(), "c.txt", b"");
    let out = dir.path().join("out.txt");
    for pile_bytes in [None, Some(4)] {
        let opts = Options {
            pile_bytes,
            ..Options::default()
        };
        let s = shuffle_files(&[a.clone(), empty.clone(), b.clone()], &out, &opts).unwrap();
        assert_eq!(s.records, 5);
        assert_eq!(
            lines_of(&fs::read(&out).unwrap()),
            lines_of(b"one\ntwo\n\nthree\nfour\n")
        );
    }
}

#[test]
fn fixed_size_records_are_permuted_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let size = 12;
    let data: Vec<u8> = (0..3000u32)
        .flat_map(|i| [i.to_le_bytes(), [7; 4], (i * 3).to_le_bytes()].concat())
        .collect();
    let input = write(dir.path(), "in.bin", &data);
    let out = dir.path().join("out.bin");
    for pile_bytes in [None, Some(5000)] {
        let opts = Options {
            format: RecordFormat::Fixed(size),
            pile_bytes,
            seed: 9,
            ..Options::default()
        };
        let s = shuffle_files(std::slice::from_ref(&input), &out, &opts).unwrap();
        assert_eq!(s.records, 3000);
        let shuffled = fs::read(&out).unwrap();
        assert_ne!(shuffled, data);
        let mut got: Vec<&[u8]> = shuffled.chunks(size).collect();
        let mut want: Vec<&[u8]> = data.chunks(size).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
    }
}

#[test]
fn same_seed_same_output_whatever_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", &numbered_lines(20000));
    let run = |threads: usize, seed: u64| {
        let out = dir.path().join(format!("out-{threads}-{seed}.txt"));
        let opts = Options {
            threads: Some(threads),
            seed,
            pile_bytes: Some(40_000),
            ..Options::default()
        };
        let s = shuffle_files(std::slice::from_ref(&input), &out, &opts).unwrap();
        assert!(s.piles > 4);
        fs::read(out).unwrap()
    };
    let one = run(1, 5);
    assert_eq!(one, run(2, 5));
    assert_eq!(one, run(4, 5));
    assert_ne!(one, run(4, 6));
}

#[test]
fn many_scatter_chunks_give_the_same_output_for_any_thread_count() {
    // The smallest budget cuts the input into 16 KiB scatter chunks: lines longer than a chunk (so
    // some chunks hold no line start), many chunks per pile, and a last line without its newline.
    let dir = tempfile::tempdir().unwrap();
    let mut data = numbered_lines(12_000);
    for i in 0..5 {
        data.extend(format!("long {i} {}\n", "z".repeat(40_000 + 7 * i)).bytes());
        data.extend(numbered_lines(700 + i));
    }
    data.extend(b"last line without a newline");
    let input = write(dir.path(), "in.txt", &data);
    let run = |threads: usize| {
        let out = dir.path().join(format!("out-{threads}.txt"));
        let opts = Options {
            memory: 1 << 20,
            threads: Some(threads),
            seed: 11,
            pile_bytes: Some(60_000),
            ..Options::default()
        };
        let s = shuffle_files(std::slice::from_ref(&input), &out, &opts).unwrap();
        assert!(s.piles > 8, "{s:?}");
        fs::read(out).unwrap()
    };
    let one = run(1);
    let mut normalised = data.clone();
    normalised.push(b'\n');
    assert_eq!(lines_of(&one), lines_of(&normalised));
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

/// Chi-square statistic of observed counts against a uniform expectation.
fn chi_square(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

#[test]
fn all_permutations_equally_likely_through_the_piles() {
    // 4 records, 4 piles of ~1 record each: the scatter/gather path must still give all 24 orders
    // with equal probability. 1200 seeds, 50 expected per order; chi-square with 23 degrees of
    // freedom exceeds 49.7 with probability 0.001 (the seeds are fixed, so the test is deterministic).
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", b"a\nb\nc\nd\n");
    let out = dir.path().join("out.txt");
    let mut counts: HashMap<Vec<u8>, u64> = HashMap::new();
    for seed in 0..1200 {
        let opts = Options {
            seed,
            pile_bytes: Some(2),
            threads: Some(1),
            ..Options::default()
        };
        shuffle_files(std::slice::from_ref(&input), &out, &opts).unwrap();
        *counts.entry(fs::read(&out).unwrap()).or_default() += 1;
    }
    assert_eq!(counts.len(), 24, "every order must occur");
    let chi = chi_square(&counts.values().copied().collect::<Vec<_>>());
    assert!(chi < 49.7, "chi-square {chi:.1} over 23 dof: not uniform");
}

#[test]
fn positions_uniform_for_a_larger_input_with_recursion_free_piles() {
    // 20 records over 6 piles, 1000 seeds: record r's position counts (20 x 20 table). Each row has
    // 19 dof; a row's chi-square exceeds 43.8 with probability 0.001.
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..20)
        .map(|i| format!("{i:02}\n"))
        .collect::<String>()
        .into_bytes();
    let input = write(dir.path(), "in.txt", &data);
    let out = dir.path().join("out.txt");
    let mut table = vec![vec![0u64; 20]; 20];
    for seed in 0..1000 {
        let opts = Options {
            seed,
            pile_bytes: Some(10),
            threads: Some(1),
            ..Options::default()
        };
        shuffle_files(std::slice::from_ref(&input), &out, &opts).unwrap();
        let text = fs::read_to_string(&out).unwrap();
        for (pos, line) in text.lines().enumerate() {
            table[line.parse::<usize>().unwrap()][pos] += 1;
        }
    }
    for (record, row) in table.iter().enumerate() {
        let chi = chi_square(row);
        assert!(
            chi < 43.8,
            "record {record}: position chi-square {chi:.1} over 19 dof"
        );
    }
}

#[test]
fn input_far_larger_than_the_budget_recurses_and_keeps_everything() {
    // Tiny lines make the per-record index dominate, so the first-level piles overflow the budget
    // and are shuffled recursively.
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..900_000u32)
        .map(|i| {
            if i % 3 == 0 {
                format!("{}\n", i % 10)
            } else {
                "\n".to_string()
            }
        })
        .collect::<String>()
        .into_bytes();
    let input = write(dir.path(), "in.txt", &data);
    let out = dir.path().join("out.txt");
    let opts = Options {
        memory: 1 << 20,
        ..Options::default()
    };
    let s = shuffle_files(&[input], &out, &opts).unwrap();
    assert!(s.piles >= 2 && s.recursive_piles > 0, "{s:?}");
    assert_eq!(s.records, 900_000);
    assert_eq!(lines_of(&fs::read(&out).unwrap()), lines_of(&data));
    assert_eq!(entries(dir.path()), ["in.txt", "out.txt"]);
}

#[test]
fn errors_are_clear_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let out = dir.path().join("out.txt");

    // A line longer than a quarter of the budget, found during pass 1 (after temp files exist).
    let mut data = numbered_lines(30000);
    data.extend(std::iter::repeat_n(b'y', 300_000));
    data.extend(b"\nend\n");
    let big = write(dir.path(), "big.txt", &data);
    let opts = Options {
        memory: 1 << 20,
        tmp_dir: Some(tmp.clone()),
        ..Options::default()
    };
    let err = shuffle_files(&[big], &out, &opts).unwrap_err();
    assert!(matches!(err, Error::Records(_)), "{err}");
    assert!(
        err.to_string().contains("big.txt") && err.to_string().contains("byte"),
        "{err}"
    );

    let odd = write(dir.path(), "odd.bin", &[0u8; 10]);
    let opts = Options {
        format: RecordFormat::Fixed(4),
        ..Options::default()
    };
    let err = shuffle_files(&[odd], &out, &opts).unwrap_err();
    assert!(
        err.to_string()
            .contains("not a multiple of the record size 4"),
        "{err}"
    );

    let err =
        shuffle_files(&[dir.path().join("missing.txt")], &out, &Options::default()).unwrap_err();
    assert!(
        matches!(err, Error::Io { .. }) && err.to_string().contains("missing.txt"),
        "{err}"
    );

    let small = write(dir.path(), "s.txt", b"a\n");
    let err = shuffle_files(
        &[small],
        &out,
        &Options {
            memory: 1000,
            ..Options::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("minimum"), "{err}");

    assert!(!out.exists());
    assert!(entries(&tmp).is_empty(), "temp piles removed on error");
    assert_eq!(entries(dir.path()), ["big.txt", "odd.bin", "s.txt", "tmp"]);
}

#[test]
fn cancelling_stops_and_removes_everything() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", &numbered_lines(5000));
    let out = dir.path().join("out.txt");
    let opts = Options {
        cancel: Some(Arc::new(AtomicBool::new(true))),
        pile_bytes: Some(10_000),
        ..Options::default()
    };
    let err = shuffle_files(&[input], &out, &opts).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert_eq!(entries(dir.path()), ["in.txt"]);
}

#[test]
fn cancelling_stops_the_in_memory_path_too() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", &numbered_lines(500));
    let out = dir.path().join("out.txt");
    let opts = Options {
        cancel: Some(Arc::new(AtomicBool::new(true))),
        ..Options::default() // 256 MiB: shuffled in memory, no piles
    };
    let err = shuffle_files(&[input], &out, &opts).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert_eq!(entries(dir.path()), ["in.txt"]);
}

#[test]
fn an_uncommitted_shuffle_leaves_nothing_and_a_committed_one_its_output() {
    use nano_shuffle::shuffle_files_uncommitted;
    let dir = tempfile::tempdir().unwrap();
    let data = numbered_lines(3000);
    let input = write(dir.path(), "in.txt", &data);
    let out = dir.path().join("out.txt");
    for pile_bytes in [None, Some(10_000)] {
        let opts = Options {
            pile_bytes,
            ..Options::default()
        };
        let finished =
            shuffle_files_uncommitted(std::slice::from_ref(&input), &out, &opts).unwrap();
        assert!(!out.exists(), "not renamed into place before commit");
        assert_eq!(
            entries(dir.path()).len(),
            2,
            "input and the temporary output only"
        );
        drop(finished);
        assert_eq!(entries(dir.path()), ["in.txt"]);

        let finished =
            shuffle_files_uncommitted(std::slice::from_ref(&input), &out, &opts).unwrap();
        let summary = finished.commit().unwrap();
        assert_eq!(summary.records, 3000);
        assert_eq!(entries(dir.path()), ["in.txt", "out.txt"]);
        assert_eq!(lines_of(&fs::read(&out).unwrap()), lines_of(&data));
        fs::remove_file(&out).unwrap();
    }
}
