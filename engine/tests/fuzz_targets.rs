//! The fuzz targets (`tickwire_engine::fuzz`) on stable: every seed, then bounded
//! deterministic mutations of them (bit flips, byte changes, cuts, splices). Any panic
//! fails the test; the input is printed first so it can become a seed.

use tickwire_engine::fuzz;

/// A masked client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

fn command_seeds() -> Vec<Vec<u8>> {
    [
        r#"{"op":"subscribe","id":1,"channels":["ticker","book"],"symbols":["sim:BTC-USD"],"depth":5}"#,
        r#"{"op":"unsubscribe","id":2,"channels":["book"],"symbols":["sim:ETH-USD"]}"#,
        r#"{"op":"symbols","id":3}"#,
        r#"{"op":"ping","id":4,"x":[1,2,{"y":null}]}"#,
        r#"{"op":"subscribe","channels":["trades"],"symbols":["a"],"throttle_ms":60000,"depth":1000}"#,
        r#"{"id":99999999999999999999999,"op":"ping"}"#,
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        "",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn frame_seeds() -> Vec<Vec<u8>> {
    let mut stream = frame(false, 1, br#"{"op":"pi"#);
    stream.extend(frame(true, 9, b"ping"));
    stream.extend(frame(true, 0, br#"ng","id":7}"#));
    stream.extend(frame(true, 10, b""));
    stream.extend(frame(true, 8, &1000u16.to_be_bytes()));
    vec![
        stream,
        frame(true, 1, &[b'x'; 300]),
        frame(true, 1, &[b'y'; 70_000]),
        frame(true, 2, b"\x00\x01"),
        frame(true, 8, &[0x03]),
        frame(true, 1, "é€😀".as_bytes()),
        vec![0x81, 0x05, b'h', b'e', b'l', b'l', b'o'],
    ]
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => v.truncate(rng.below(v.len() + 1)),
            3 => {
                let other = &seeds[rng.below(seeds.len())];
                let at = rng.below(v.len() + 1);
                let from = rng.below(other.len() + 1);
                v.splice(at..at, other[from..].iter().copied());
            }
            _ => {
                let at = rng.below(v.len() + 1);
                v.insert(at, rng.next() as u8);
            }
        }
    }
    v
}

fn run(target: fn(&[u8]), seeds: &[Vec<u8>], iterations: usize, seed: u64) {
    let mut rng = Rng(seed);
    let inputs = seeds
        .iter()
        .cloned()
        .chain(std::iter::repeat_with(|| mutate(&mut rng, seeds)).take(iterations));
    for input in inputs {
        let ran = std::panic::catch_unwind(|| target(&input));
        if ran.is_err() {
            panic!("fuzz target panicked on input {input:?}");
        }
    }
}

#[test]
fn client_frames_target_survives_seeds_and_mutations() {
    run(
        fuzz::client_frames,
        &frame_seeds(),
        30_000,
        0x9e37_79b9_7f4a_7c15,
    );
}

#[test]
fn command_target_survives_seeds_and_mutations() {
    run(
        fuzz::command,
        &command_seeds(),
        30_000,
        0xd1b5_4a32_d192_ed03,
    );
}
