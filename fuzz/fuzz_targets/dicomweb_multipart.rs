//! A WADO-RS answer: `boundary_of` its Content-Type, then `MultipartParser` on its body.
//!
//! Input: one byte that seeds the chunk sizes, the Content-Type, `\n`, the body. The body
//! is fed in chunks whose sizes come from that byte (empty chunks too), so that where a
//! chunk ends is fuzzed as well. Checks: the events are well formed (each part is Begin,
//! Data..., End), a part with Content-Length has that many bytes, and the parts, or the kind
//! of error, are the same as when the body comes in one chunk (an error's message may quote
//! the bytes buffered at the time, which depend on the chunks).
#![no_main]

use dicomweb::multipart::{Event, MultipartError, MultipartParser, PartHeaders, boundary_of};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: nachet_fuzz::CappedAllocator = nachet_fuzz::CappedAllocator;

type Parts = Vec<(PartHeaders, Vec<u8>)>;

/// The body's parts, fed in chunks of the sizes `next_size` gives.
fn parse(
    boundary: &str,
    body: &[u8],
    mut next_size: impl FnMut() -> usize,
) -> Result<Parts, MultipartError> {
    let mut parser = MultipartParser::new(boundary)?;
    let mut events = Vec::new();
    let mut parts: Parts = Vec::new();
    let mut open = false;
    let mut rest = body;
    let mut empty_chunks = 0;
    while !rest.is_empty() {
        let mut size = next_size().min(rest.len());
        if size == 0 {
            empty_chunks += 1;
            if empty_chunks > 16 {
                size = 1;
            }
        }
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        parser.feed(chunk, &mut events)?;
        for event in events.drain(..) {
            match event {
                Event::Begin(headers) => {
                    assert!(!open, "a part began inside another");
                    open = true;
                    parts.push((headers, Vec::new()));
                }
                Event::Data(data) => {
                    assert!(open, "data outside a part");
                    parts.last_mut().unwrap().1.extend_from_slice(&data);
                }
                Event::End => {
                    assert!(open, "a part ended outside a part");
                    open = false;
                    let (headers, content) = parts.last().unwrap();
                    if let Some(length) = headers.content_length {
                        assert_eq!(content.len() as u64, length, "{headers:?}");
                    }
                }
            }
        }
    }
    parser.finish()?;
    assert!(!open, "finished inside a part");
    assert_eq!(parser.parts(), parts.len());
    Ok(parts)
}

/// The parts, or the kind of error.
fn outcome(result: &Result<Parts, MultipartError>) -> Result<&Parts, &'static str> {
    match result {
        Ok(parts) => Ok(parts),
        Err(MultipartError::Truncated(_)) => Err("truncated"),
        Err(MultipartError::Malformed(_)) => Err("malformed"),
    }
}

/// Chunk sizes up to a maximum chosen by `seed`, from a xorshift generator it seeds.
fn chunk_sizes(seed: u8) -> impl FnMut() -> usize {
    const MAX: [u64; 8] = [1, 2, 3, 7, 16, 70, 300, 5000];
    let max = MAX[usize::from(seed % 8)];
    let mut state = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % (max + 1)) as usize
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let (content_type, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(end) => (&rest[..end], &rest[end + 1..]),
        None => (rest, &[][..]),
    };
    // A header value reqwest gives as text.
    let Ok(content_type) = std::str::from_utf8(content_type) else {
        return;
    };
    let Ok(boundary) = boundary_of(content_type) else {
        return;
    };
    assert!(!boundary.is_empty());
    let whole = parse(&boundary, body, || usize::MAX);
    let chunked = parse(&boundary, body, chunk_sizes(seed));
    assert_eq!(
        outcome(&whole),
        outcome(&chunked),
        "the outcome depends on where chunks end: {whole:?} / {chunked:?}"
    );
});
