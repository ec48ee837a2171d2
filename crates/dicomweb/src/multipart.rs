//! A streaming parser for `multipart/related` bodies (RFC 2046 section 5.1, RFC 2387), as
//! WADO-RS answers a series: one part per instance, each with its own headers.
//!
//! Why not a crate: `multer`, the maintained streaming multipart crate, is built for
//! `multipart/form-data`. It does accept parts without `Content-Disposition`, but it
//! ignores a part's `Content-Length`, and its input buffer takes everything the body stream
//! has ready before it looks for a boundary, so its memory is not bounded by design. This
//! parser is small, push-based and synchronous (easy to test with any chunking):
//!
//! - Feed it the body chunk by chunk with [`MultipartParser::feed`]; it appends
//!   [`Event`]s: [`Event::Begin`] with the part's headers, [`Event::Data`] slices of the
//!   part's body, [`Event::End`]. Call [`MultipartParser::finish`] at the end of the body:
//!   a body that stops before the closing delimiter is [`MultipartError::Truncated`].
//! - It keeps at most a delimiter's length of a part's body (or a part's headers, up to
//!   [`MAX_HEADER_BYTES`]) between calls: everything else is handed out at once, so memory
//!   does not grow with a part or with the body.
//! - A part with `Content-Length` is taken by count (its bytes are never scanned for the
//!   boundary) and must be followed by the delimiter; a part without is delimited by the
//!   boundary. The preamble before the first delimiter and the epilogue after the closing
//!   one are ignored. Data events never include the CRLF that precedes a delimiter, so a
//!   part's bytes are exactly its content.

use bytes::{Buf, Bytes, BytesMut};

/// Longest header block of one part accepted.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// One part's headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartHeaders {
    /// `Content-Type`, as sent.
    pub content_type: Option<String>,
    /// `Content-Length`, when sent.
    pub content_length: Option<u64>,
    /// Every header as (name, value), names as sent.
    pub all: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A part starts; its body follows as [`Event::Data`].
    Begin(PartHeaders),
    /// The next bytes of the current part.
    Data(Bytes),
    /// The current part is complete.
    End,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    /// The body ended before the closing delimiter.
    #[error("the multipart body is truncated: {0}")]
    Truncated(String),
    /// The body does not follow the multipart syntax.
    #[error("the multipart body is malformed: {0}")]
    Malformed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first delimiter.
    Preamble,
    /// Just after a delimiter: `--` (close) or padding and CRLF (a part follows).
    AfterDelimiter,
    /// After a delimiter that is not the closing one: padding, then CRLF.
    DelimiterPadding,
    /// In a part's header block (the buffer starts with the CRLF that ended the delimiter
    /// line).
    Headers,
    /// In a part's body; `Some(n)`: n bytes left by Content-Length.
    Body(Option<u64>),
    /// A counted body is complete: the delimiter must follow.
    DelimiterAfterCountedBody,
    /// After the closing delimiter.
    Done,
}

/// See the [module documentation](self).
#[derive(Debug)]
pub struct MultipartParser {
    /// `CRLF--boundary`.
    delimiter: Vec<u8>,
    finder: memchr::memmem::Finder<'static>,
    buffer: BytesMut,
    state: State,
    parts: usize,
    /// Bytes of the current part handed out so far.
    part_bytes: u64,
}

impl MultipartParser {
    /// A parser for `boundary` (1 to 70 characters, RFC 2046).
    pub fn new(boundary: &str) -> Result<Self, MultipartError> {
        if boundary.is_empty() || boundary.len() > 70 {
            return Err(MultipartError::Malformed(format!(
                "the boundary {boundary:?} is not 1 to 70 characters long"
            )));
        }
        let delimiter = [b"\r\n--", boundary.as_bytes()].concat();
        let mut buffer = BytesMut::with_capacity(64 * 1024);
        // The first delimiter may open the body without a CRLF before it: seed one.
        buffer.extend_from_slice(b"\r\n");
        Ok(MultipartParser {
            finder: memchr::memmem::Finder::new(&delimiter).into_owned(),
            delimiter,
            buffer,
            state: State::Preamble,
            parts: 0,
            part_bytes: 0,
        })
    }

    /// Parts begun so far.
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// Whether the closing delimiter has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Parses the next chunk of the body, appending what it completes to `events`.
    pub fn feed(&mut self, chunk: &[u8], events: &mut Vec<Event>) -> Result<(), MultipartError> {
        if self.state == State::Done {
            return Ok(()); // epilogue
        }
        self.buffer.extend_from_slice(chunk);
        while self.step(events)? {}
        Ok(())
    }

    /// Checks that the body ended where it may: after the closing delimiter.
    pub fn finish(&self) -> Result<(), MultipartError> {
        match self.state {
            State::Done => Ok(()),
            State::Preamble => Err(MultipartError::Truncated(
                "no boundary delimiter at all: the body is empty or not multipart with this boundary"
                    .to_string(),
            )),
            State::AfterDelimiter | State::DelimiterPadding if self.parts == 0 => {
                Err(MultipartError::Truncated(
                    "the body ended after the first delimiter".to_string(),
                ))
            }
            State::AfterDelimiter | State::DelimiterPadding => Err(MultipartError::Truncated(format!(
                "the body ended after part {} without the closing delimiter",
                self.parts
            ))),
            State::Headers => Err(MultipartError::Truncated(format!(
                "the body ended inside the headers of part {}",
                self.parts + 1
            ))),
            State::Body(Some(left)) => Err(MultipartError::Truncated(format!(
                "the body ended inside part {}, {} bytes short of its Content-Length",
                self.parts, left
            ))),
            State::Body(None) | State::DelimiterAfterCountedBody => {
                Err(MultipartError::Truncated(format!(
                    "the body ended inside part {} after {} bytes",
                    self.parts, self.part_bytes
                )))
            }
        }
    }

    /// One step of the state machine; false when it needs more input.
    fn step(&mut self, events: &mut Vec<Event>) -> Result<bool, MultipartError> {
        let dlen = self.delimiter.len();
        match self.state {
            State::Preamble => match self.finder.find(&self.buffer) {
                Some(at) => {
                    self.buffer.advance(at + dlen);
                    self.state = State::AfterDelimiter;
                    Ok(true)
                }
                None => {
                    let keep = (dlen - 1).min(self.buffer.len());
                    self.buffer.advance(self.buffer.len() - keep);
                    Ok(false)
                }
            },
            State::AfterDelimiter => {
                if self.buffer.len() < 2 {
                    return Ok(false);
                }
                if &self.buffer[..2] == b"--" {
                    self.state = State::Done;
                    self.buffer.clear();
                    return Ok(false);
                }
                // Not the closing delimiter, whatever follows (` --` is not `--`).
                self.state = State::DelimiterPadding;
                Ok(true)
            }
            State::DelimiterPadding => {
                // Transport padding (spaces, tabs) may follow a delimiter.
                match self.buffer.iter().position(|b| *b != b' ' && *b != b'\t') {
                    Some(at) => self.buffer.advance(at),
                    None => {
                        self.buffer.clear();
                        return Ok(false);
                    }
                }
                if self.buffer.len() < 2 {
                    return Ok(false);
                }
                if &self.buffer[..2] != b"\r\n" {
                    return Err(MultipartError::Malformed(format!(
                        "unexpected bytes {:?} after boundary delimiter {}",
                        String::from_utf8_lossy(&self.buffer[..self.buffer.len().min(20)]),
                        self.parts
                    )));
                }
                self.state = State::Headers;
                Ok(true)
            }
            State::Headers => match memchr::memmem::find(&self.buffer, b"\r\n\r\n") {
                // The limit that applies while the block is incomplete (below): the block
                // is refused whatever the chunks, not only when it arrives in small ones.
                Some(at) if at + 3 > MAX_HEADER_BYTES => Err(self.headers_too_long()),
                Some(at) => {
                    let block = if at >= 2 {
                        &self.buffer[2..at]
                    } else {
                        &[][..]
                    };
                    let headers = parse_headers(block, self.parts + 1)?;
                    self.buffer.advance(at + 4);
                    self.parts += 1;
                    self.part_bytes = 0;
                    self.state = State::Body(headers.content_length);
                    events.push(Event::Begin(headers));
                    Ok(true)
                }
                None if self.buffer.len() > MAX_HEADER_BYTES => Err(self.headers_too_long()),
                None => Ok(false),
            },
            State::Body(Some(left)) => {
                if left == 0 {
                    self.state = State::DelimiterAfterCountedBody;
                    return Ok(true);
                }
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(self.buffer.len());
                if take == 0 {
                    return Ok(false);
                }
                self.emit(take, events);
                self.state = State::Body(Some(left - take as u64));
                Ok(true)
            }
            State::DelimiterAfterCountedBody => {
                if self.buffer.len() < dlen {
                    // Fail early when what is there already differs.
                    if self.buffer[..] != self.delimiter[..self.buffer.len()] {
                        return Err(self.longer_than_announced());
                    }
                    return Ok(false);
                }
                if self.buffer[..dlen] != self.delimiter[..] {
                    return Err(self.longer_than_announced());
                }
                self.buffer.advance(dlen);
                events.push(Event::End);
                self.state = State::AfterDelimiter;
                Ok(true)
            }
            State::Body(None) => match self.finder.find(&self.buffer) {
                Some(at) => {
                    if at > 0 {
                        self.emit(at, events);
                    }
                    self.buffer.advance(dlen);
                    events.push(Event::End);
                    self.state = State::AfterDelimiter;
                    Ok(true)
                }
                None => {
                    // The last dlen - 1 bytes may be the start of a delimiter.
                    let safe = self.buffer.len().saturating_sub(dlen - 1);
                    if safe > 0 {
                        self.emit(safe, events);
                    }
                    Ok(false)
                }
            },
            State::Done => {
                self.buffer.clear();
                Ok(false)
            }
        }
    }

    fn emit(&mut self, len: usize, events: &mut Vec<Event>) {
        self.part_bytes += len as u64;
        events.push(Event::Data(self.buffer.split_to(len).freeze()));
    }

    fn headers_too_long(&self) -> MultipartError {
        MultipartError::Malformed(format!(
            "the headers of part {} are longer than {MAX_HEADER_BYTES} bytes",
            self.parts + 1
        ))
    }

    fn longer_than_announced(&self) -> MultipartError {
        MultipartError::Malformed(format!(
            "part {} is followed by more bytes than its Content-Length ({}) announced, not by the boundary delimiter",
            self.parts, self.part_bytes
        ))
    }
}

fn parse_headers(block: &[u8], part: usize) -> Result<PartHeaders, MultipartError> {
    let text = std::str::from_utf8(block).map_err(|_| {
        MultipartError::Malformed(format!("the headers of part {part} are not text"))
    })?;
    let mut all: Vec<(String, String)> = Vec::new();
    for line in text.split("\r\n").filter(|line| !line.is_empty()) {
        if line.starts_with([' ', '\t']) {
            // A folded line continues the previous header (RFC 5322 section 2.2.3).
            match all.last_mut() {
                Some((_, value)) => {
                    value.push(' ');
                    value.push_str(line.trim());
                    continue;
                }
                None => {
                    return Err(MultipartError::Malformed(format!(
                        "the headers of part {part} start with a continuation line"
                    )));
                }
            }
        }
        let (name, value) = line.split_once(':').ok_or_else(|| {
            MultipartError::Malformed(format!(
                "part {part} has a header line without ':': {line:?}"
            ))
        })?;
        all.push((name.trim().to_string(), value.trim().to_string()));
    }
    let find = |wanted: &str| {
        all.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| value.clone())
    };
    let content_length = match find("Content-Length") {
        Some(value) => Some(value.parse::<u64>().map_err(|_| {
            MultipartError::Malformed(format!("part {part} has Content-Length {value:?}"))
        })?),
        None => None,
    };
    Ok(PartHeaders {
        content_type: find("Content-Type"),
        content_length,
        all,
    })
}

/// The `boundary` parameter of a `multipart/related` Content-Type (quotes removed).
/// Errors say what the Content-Type was.
pub fn boundary_of(content_type: &str) -> Result<String, String> {
    let mut params = content_type.split(';');
    let media_type = params.next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("multipart/related") {
        return Err(format!(
            "Content-Type {content_type:?} is not multipart/related"
        ));
    }
    for param in params {
        if let Some((name, value)) = param.split_once('=')
            && name.trim().eq_ignore_ascii_case("boundary")
        {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            if !value.is_empty() {
                return Ok(value.to_string());
            }
        }
    }
    Err(format!(
        "Content-Type {content_type:?} has no boundary parameter"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDARY: &str = "b0undary-123";

    /// A part: (headers, body).
    fn body(parts: &[(&str, &[u8])], preamble: &str, epilogue: &str) -> Vec<u8> {
        let mut out = preamble.as_bytes().to_vec();
        if !preamble.is_empty() {
            out.extend_from_slice(b"\r\n");
        }
        for (headers, content) in parts {
            out.extend_from_slice(format!("--{BOUNDARY}\r\n{headers}\r\n").as_bytes());
            out.extend_from_slice(content);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{BOUNDARY}--").as_bytes());
        out.extend_from_slice(epilogue.as_bytes());
        out
    }

    /// Parsed parts as (headers, content), feeding `input` in chunks of `chunk` bytes.
    fn parse(input: &[u8], chunk: usize) -> Result<Vec<(PartHeaders, Vec<u8>)>, MultipartError> {
        let mut parser = MultipartParser::new(BOUNDARY)?;
        let mut events = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            parser.feed(piece, &mut events)?;
            // Memory stays bounded: never more than a delimiter or a header block kept.
            assert!(parser.buffer.len() <= MAX_HEADER_BYTES + piece.len());
        }
        parser.finish()?;
        let mut parts: Vec<(PartHeaders, Vec<u8>)> = Vec::new();
        let mut open = false;
        for event in events {
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
                    assert!(open, "end outside a part");
                    open = false;
                }
            }
        }
        assert!(!open, "a part never ended");
        Ok(parts)
    }

    fn dicom_like(len: usize, seed: u8) -> Vec<u8> {
        // Includes CR, LF and '-' bytes, and a near-delimiter, to tempt a sloppy parser.
        let mut v: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        if len > 40 {
            v[10..26].copy_from_slice(b"\r\n--b0undary-12X");
        }
        v
    }

    #[test]
    fn parts_with_and_without_content_length_at_every_chunk_size() {
        let a = dicom_like(300, 1);
        let b = dicom_like(1000, 2);
        let c = dicom_like(0, 3);
        let input = body(
            &[
                (
                    &format!(
                        "Content-Type: application/dicom\r\nContent-Length: {}\r\n",
                        a.len()
                    ),
                    &a,
                ),
                ("Content-Type: application/dicom\r\n", &b),
                (
                    "content-type: application/dicom\r\ncontent-length: 0\r\n",
                    &c,
                ),
            ],
            "",
            "\r\n",
        );
        for chunk in [1, 2, 3, 7, 13, 16, 17, 64, 299, 1000, input.len()] {
            let parts = parse(&input, chunk).unwrap_or_else(|e| panic!("chunk {chunk}: {e}"));
            assert_eq!(parts.len(), 3, "chunk {chunk}");
            assert_eq!(parts[0].1, a, "chunk {chunk}");
            assert_eq!(parts[1].1, b, "chunk {chunk}");
            assert_eq!(parts[2].1, c, "chunk {chunk}");
            assert_eq!(parts[0].0.content_length, Some(300));
            assert_eq!(parts[1].0.content_length, None);
            assert_eq!(parts[2].0.content_length, Some(0));
            assert_eq!(
                parts[1].0.content_type.as_deref(),
                Some("application/dicom")
            );
            assert_eq!(
                parts[2].0.content_type.as_deref(),
                Some("application/dicom"),
                "header names are case-insensitive"
            );
        }
    }

    #[test]
    fn every_split_of_a_small_body_gives_the_same_parts() {
        let input = body(
            &[
                ("Content-Type: application/dicom\r\n", b"abc\r\n-"),
                ("Content-Length: 4\r\n", b"wxyz"),
            ],
            "preamble",
            "epilogue",
        );
        let whole = parse(&input, input.len()).unwrap();
        for at in 0..=input.len() {
            let mut parser = MultipartParser::new(BOUNDARY).unwrap();
            let mut events = Vec::new();
            parser.feed(&input[..at], &mut events).unwrap();
            parser.feed(&input[at..], &mut events).unwrap();
            parser.finish().unwrap();
            let data: Vec<u8> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Data(d) => Some(d.to_vec()),
                    _ => None,
                })
                .flatten()
                .collect();
            assert_eq!(data, b"abc\r\n-wxyz".to_vec(), "split at {at}");
        }
        assert_eq!(whole[0].1, b"abc\r\n-");
        assert_eq!(whole[1].1, b"wxyz");
    }

    #[test]
    fn preamble_epilogue_padding_and_parts_without_headers() {
        let mut input = b"This is a preamble.\r\nIt has two lines.\r\n".to_vec();
        input.extend_from_slice(format!("--{BOUNDARY}  \t\r\n\r\nno headers\r\n").as_bytes());
        input.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Type: application/dicom;\r\n transfer-syntax=1.2.840.10008.1.2.1\r\n\r\nfolded\r\n")
                .as_bytes(),
        );
        input.extend_from_slice(
            format!("--{BOUNDARY}--\r\nThe epilogue, ignored.\r\n--{BOUNDARY}\r\n\r\nnot a part")
                .as_bytes(),
        );
        for chunk in [1, 5, input.len()] {
            let parts = parse(&input, chunk).unwrap();
            assert_eq!(parts.len(), 2);
            assert_eq!(parts[0].0, PartHeaders::default());
            assert_eq!(parts[0].1, b"no headers");
            assert_eq!(
                parts[1].0.content_type.as_deref(),
                Some("application/dicom; transfer-syntax=1.2.840.10008.1.2.1")
            );
            assert_eq!(parts[1].1, b"folded");
        }
    }

    #[test]
    fn a_body_that_stops_early_is_truncated() {
        let content = dicom_like(500, 9);
        let input = body(
            &[
                ("Content-Length: 500\r\n", &content),
                ("Content-Type: application/dicom\r\n", &content),
            ],
            "",
            "",
        );
        // Cut anywhere before the closing delimiter's "--".
        let closing = input.len() - 2;
        for cut in [0, 5, 20, 100, 530, 560, 700, closing - 1, closing] {
            let err = parse(&input[..cut], 7).unwrap_err();
            assert!(
                matches!(err, MultipartError::Truncated(_)),
                "cut at {cut}: {err:?}"
            );
        }
        let err = parse(&input[..100], 7).unwrap_err();
        assert_eq!(
            err,
            MultipartError::Truncated(
                "the body ended inside part 1, 439 bytes short of its Content-Length".into()
            )
        );
        // An empty body, or one in another format.
        assert!(matches!(parse(b"", 1), Err(MultipartError::Truncated(_))));
        assert!(matches!(
            parse(b"<html>Internal error</html>", 4),
            Err(MultipartError::Truncated(_))
        ));
    }

    #[test]
    fn a_part_longer_than_its_content_length_is_malformed() {
        let input = body(&[("Content-Length: 3\r\n", b"abcdef")], "", "");
        for chunk in [1, 4, input.len()] {
            match parse(&input, chunk) {
                Err(MultipartError::Malformed(message)) => {
                    assert!(message.contains("Content-Length (3)"), "{message}")
                }
                other => panic!("chunk {chunk}: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_headers_are_malformed() {
        let input = body(&[("Content-Length: lots\r\n", b"x")], "", "");
        assert!(matches!(
            parse(&input, 3),
            Err(MultipartError::Malformed(_))
        ));
        let input = body(&[("no colon here\r\n", b"x")], "", "");
        assert!(matches!(
            parse(&input, 3),
            Err(MultipartError::Malformed(_))
        ));
        let mut input = format!("--{BOUNDARY}\r\nX-Big: ").into_bytes();
        input.extend(std::iter::repeat_n(b'a', MAX_HEADER_BYTES + 10));
        assert!(matches!(
            parse(&input, 1000),
            Err(MultipartError::Malformed(_))
        ));
        let input = format!("--{BOUNDARY}garbage\r\n\r\nx\r\n--{BOUNDARY}--");
        assert!(matches!(
            parse(input.as_bytes(), 2),
            Err(MultipartError::Malformed(_))
        ));
    }

    #[test]
    fn headers_over_the_limit_are_refused_however_the_body_is_chunked() {
        // The parser keeps the CRLF that ended the delimiter line, then the header lines:
        // a block is over the limit when, without the last byte of its blank line, it is
        // longer than MAX_HEADER_BYTES (what a byte-at-a-time feed would hold).
        let block = |filler: usize| {
            let mut input = format!("--{BOUNDARY}\r\nX-Big: ").into_bytes();
            input.extend(std::iter::repeat_n(b'a', filler));
            input.extend_from_slice(format!("\r\n\r\nx\r\n--{BOUNDARY}--").as_bytes());
            input
        };
        let at_limit = block(MAX_HEADER_BYTES - "\r\nX-Big: ".len() - 3);
        let over = block(MAX_HEADER_BYTES - "\r\nX-Big: ".len() - 2);
        for chunk in [1, 7, 4096, usize::MAX] {
            let parts = parse(&at_limit, chunk).unwrap_or_else(|e| panic!("chunk {chunk}: {e}"));
            assert_eq!(parts.len(), 1);
            assert_eq!(parts[0].1, b"x");
            match parse(&over, chunk) {
                Err(MultipartError::Malformed(message)) => {
                    assert!(message.contains("longer than"), "chunk {chunk}: {message}")
                }
                other => panic!("chunk {chunk}: {other:?}"),
            }
        }
    }

    #[test]
    fn padding_then_dashes_is_not_the_closing_delimiter_at_any_split() {
        // Found by fuzzing: fed whole, this was malformed; split after the padding, the
        // parser forgot the padding and took `--` for the closing delimiter.
        let input = format!("--{BOUNDARY}\r\n\r\nabc\r\n--{BOUNDARY} \t--\r\n");
        let input = input.as_bytes();
        for at in 0..=input.len() {
            let mut parser = MultipartParser::new(BOUNDARY).unwrap();
            let mut events = Vec::new();
            let result = parser
                .feed(&input[..at], &mut events)
                .and_then(|()| parser.feed(&input[at..], &mut events))
                .and_then(|()| parser.finish());
            assert!(
                matches!(result, Err(MultipartError::Malformed(_))),
                "split at {at}: {result:?}"
            );
        }
    }

    #[test]
    fn large_parts_are_handed_out_as_they_arrive() {
        let content = dicom_like(1 << 20, 4);
        let input = body(&[("Content-Type: application/dicom\r\n", &content)], "", "");
        let mut parser = MultipartParser::new(BOUNDARY).unwrap();
        let mut events = Vec::new();
        let mut handed_out = 0usize;
        for piece in input.chunks(64 * 1024) {
            parser.feed(piece, &mut events).unwrap();
            for event in events.drain(..) {
                if let Event::Data(d) = event {
                    handed_out += d.len();
                }
            }
            assert!(parser.buffer.len() < parser.delimiter.len() + 4);
        }
        parser.finish().unwrap();
        assert_eq!(handed_out, content.len());
    }

    #[test]
    fn boundaries_from_content_types() {
        assert_eq!(
            boundary_of("multipart/related; type=\"application/dicom\"; boundary=456ba6f1-24c2")
                .unwrap(),
            "456ba6f1-24c2"
        );
        assert_eq!(
            boundary_of("Multipart/Related;boundary=\"a b:c\";type=application/dicom").unwrap(),
            "a b:c"
        );
        assert!(boundary_of("application/dicom+json").is_err());
        assert!(boundary_of("multipart/related; type=application/dicom").is_err());
        assert!(MultipartParser::new("").is_err());
        assert!(MultipartParser::new(&"x".repeat(71)).is_err());
    }
}
