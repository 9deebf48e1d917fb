//! FastCGI 1.0, both directions: a resumable [`Decoder`] that turns bytes
//! into [`Event`]s and encoders that append whole records to a `Vec<u8>`.
//!
//! The decoder is the hot path of the server, so it never copies stream
//! content (PARAMS, STDIN, DATA, STDOUT, STDERR pieces borrow the input) and
//! never allocates per byte; only the small fixed-size and management bodies
//! are buffered, and those are bounded by a record's 65535 bytes of content.
//! It knows nothing of request state: which request ids are active, and what
//! a record means for them, is the host's business (FastCGI 1.0 §3.3).

use std::fmt;
use std::ops::Range;

use super::{excerpt, Error};

/// `FCGI_VERSION_1`, the only version FastCGI has.
pub const VERSION_1: u8 = 1;
/// `FCGI_HEADER_LEN`: every record starts with 8 header bytes.
pub const HEADER_LEN: usize = 8;
/// The largest content a record can carry (its length is a `u16`).
pub const MAX_CONTENT_LEN: usize = 65535;
/// `FCGI_KEEP_CONN`: the BEGIN_REQUEST flag asking to keep the connection.
pub const FCGI_KEEP_CONN: u8 = 1;
/// `FCGI_NULL_REQUEST_ID`: the request id of management records.
pub const FCGI_NULL_REQUEST_ID: u16 = 0;
/// GET_VALUES variable: connections the application accepts at once.
pub const FCGI_MAX_CONNS: &str = "FCGI_MAX_CONNS";
/// GET_VALUES variable: requests the application accepts at once.
pub const FCGI_MAX_REQS: &str = "FCGI_MAX_REQS";
/// GET_VALUES variable: "1" if the application multiplexes connections.
pub const FCGI_MPXS_CONNS: &str = "FCGI_MPXS_CONNS";

/// The record types of FastCGI 1.0 §8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// BEGIN_REQUEST: starts a request, with its role and flags.
    BeginRequest = 1,
    /// ABORT_REQUEST: the front server gives up on a request.
    AbortRequest = 2,
    /// END_REQUEST: the application ends a request.
    EndRequest = 3,
    /// PARAMS: the name-value pairs of a request (a stream).
    Params = 4,
    /// STDIN: the request body (a stream).
    Stdin = 5,
    /// STDOUT: the response (a stream).
    Stdout = 6,
    /// STDERR: the application's error output (a stream).
    Stderr = 7,
    /// DATA: the file a FILTER filters (a stream).
    Data = 8,
    /// GET_VALUES: a management query of the application's variables.
    GetValues = 9,
    /// GET_VALUES_RESULT: the answer to GET_VALUES.
    GetValuesResult = 10,
    /// UNKNOWN_TYPE: the answer to a management record of an unknown type.
    UnknownType = 11,
}

impl RecordType {
    /// The record type with this wire value, `None` for types FastCGI 1.0
    /// does not define (a server answers those with UNKNOWN_TYPE).
    pub fn from_u8(v: u8) -> Option<RecordType> {
        use RecordType::*;
        const ALL: [RecordType; 11] = [
            BeginRequest,
            AbortRequest,
            EndRequest,
            Params,
            Stdin,
            Stdout,
            Stderr,
            Data,
            GetValues,
            GetValuesResult,
            UnknownType,
        ];
        ALL.get(usize::from(v).wrapping_sub(1)).copied()
    }
}

/// The roles of FastCGI 1.0 §6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Role {
    /// Answers a request: the usual role.
    Responder = 1,
    /// Says yes (200) or no to a request, without its body.
    Authorizer = 2,
    /// Answers with a filtered version of the DATA stream.
    Filter = 3,
}

impl Role {
    /// The role with this wire value, `None` for an unknown role (answered
    /// with END_REQUEST `FCGI_UNKNOWN_ROLE`).
    pub fn from_u16(v: u16) -> Option<Role> {
        match v {
            1 => Some(Role::Responder),
            2 => Some(Role::Authorizer),
            3 => Some(Role::Filter),
            _ => None,
        }
    }
}

/// The `protocolStatus` of an END_REQUEST record (FastCGI 1.0 §5.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ProtocolStatus {
    /// The request was answered.
    RequestComplete = 0,
    /// A second request on a connection that does not multiplex.
    CantMpxConn = 1,
    /// The application is out of some resource (here: past FCGI_MAX_REQS).
    Overloaded = 2,
    /// The application does not take this role.
    UnknownRole = 3,
}

impl ProtocolStatus {
    /// The status with this wire value, `None` if FastCGI 1.0 does not
    /// define it.
    pub fn from_u8(v: u8) -> Option<ProtocolStatus> {
        match v {
            0 => Some(ProtocolStatus::RequestComplete),
            1 => Some(ProtocolStatus::CantMpxConn),
            2 => Some(ProtocolStatus::Overloaded),
            3 => Some(ProtocolStatus::UnknownRole),
            _ => None,
        }
    }
}

/// Stream record kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// PARAMS.
    Params,
    /// STDIN.
    Stdin,
    /// DATA.
    Data,
    /// STDOUT.
    Stdout,
    /// STDERR.
    Stderr,
}

impl Stream {
    /// The record type that carries this stream.
    pub fn record_type(self) -> RecordType {
        match self {
            Stream::Params => RecordType::Params,
            Stream::Stdin => RecordType::Stdin,
            Stream::Data => RecordType::Data,
            Stream::Stdout => RecordType::Stdout,
            Stream::Stderr => RecordType::Stderr,
        }
    }

    /// The spec's name of the record type that carries it.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Params => "PARAMS",
            Stream::Stdin => "STDIN",
            Stream::Data => "DATA",
            Stream::Stdout => "STDOUT",
            Stream::Stderr => "STDERR",
        }
    }

    /// The stream a record type carries, `None` for discrete records.
    pub fn from_record_type(t: RecordType) -> Option<Stream> {
        match t {
            RecordType::Params => Some(Stream::Params),
            RecordType::Stdin => Some(Stream::Stdin),
            RecordType::Data => Some(Stream::Data),
            RecordType::Stdout => Some(Stream::Stdout),
            RecordType::Stderr => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// The 8-byte header that starts every record (FastCGI 1.0 §3.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Always `FCGI_VERSION_1` from a well-behaved peer.
    pub version: u8,
    /// The raw [`RecordType`] value.
    pub record_type: u8,
    /// 0 for management records.
    pub request_id: u16,
    /// Bytes of content that follow the header.
    pub content_length: u16,
    /// Bytes of padding after the content.
    pub padding_length: u8,
}

impl Header {
    /// Reads a header from its 8 wire bytes (the reserved byte is ignored).
    pub fn parse(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            version: b[0],
            record_type: b[1],
            request_id: u16::from_be_bytes([b[2], b[3]]),
            content_length: u16::from_be_bytes([b[4], b[5]]),
            padding_length: b[6],
        }
    }
}

/// What the decoder found: one record, or one piece of a stream record.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// BEGIN_REQUEST; `role` stays raw so the host can answer UNKNOWN_ROLE.
    BeginRequest {
        /// The request this record starts.
        request_id: u16,
        /// The raw [`Role`] value.
        role: u16,
        /// `FCGI_KEEP_CONN` or 0.
        flags: u8,
    },
    /// ABORT_REQUEST.
    AbortRequest {
        /// The request given up on.
        request_id: u16,
    },
    /// END_REQUEST (client side).
    EndRequest {
        /// The request ended.
        request_id: u16,
        /// The application's exit status.
        app_status: u32,
        /// The raw [`ProtocolStatus`] value.
        protocol_status: u8,
    },
    /// A piece of a stream record's content, borrowed from the input. A record may be
    /// delivered in several pieces (as its bytes arrive), never an empty piece, EXCEPT
    /// that a record with content_length 0 yields exactly one event with empty `data`:
    /// the end of that stream.
    Stream {
        /// Which stream.
        stream: Stream,
        /// The request it belongs to.
        request_id: u16,
        /// The bytes of this piece.
        data: &'a [u8],
    },
    /// GET_VALUES (management, request id 0): the variables asked for.
    GetValues {
        /// The variable names.
        names: Vec<Vec<u8>>,
    },
    /// GET_VALUES_RESULT: the variables and their values.
    GetValuesResult {
        /// Name and value of each variable.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// An UNKNOWN_TYPE record received (client side).
    UnknownType {
        /// The type the peer did not know.
        record_type: u8,
    },
    /// A record whose type is not one of the 11 above (content skipped); a server answers UNKNOWN_TYPE.
    Unknown {
        /// The raw type.
        record_type: u8,
        /// The request id it carried.
        request_id: u16,
    },
}

/// A log line's view of an event: its kind, request id and sizes, and at
/// most a short escaped excerpt of the bytes it carries (the derived
/// `Debug` prints them all, which a client could use to flood the log).
impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::BeginRequest { request_id, role, flags } => write!(
                f,
                "BEGIN_REQUEST for request {request_id} (role {role}, flags {flags})"
            ),
            Event::AbortRequest { request_id } => write!(f, "ABORT_REQUEST for request {request_id}"),
            Event::EndRequest { request_id, app_status, protocol_status } => write!(
                f,
                "END_REQUEST for request {request_id} (app status {app_status}, protocol status {protocol_status})"
            ),
            Event::Stream { stream, request_id, data } => write!(
                f,
                "{} record for request {request_id}, {} bytes: {}",
                stream.name(),
                data.len(),
                excerpt(data)
            ),
            Event::GetValues { names } => write!(f, "GET_VALUES of {} names", names.len()),
            Event::GetValuesResult { pairs } => {
                write!(f, "GET_VALUES_RESULT of {} pairs", pairs.len())
            }
            Event::UnknownType { record_type } => write!(f, "UNKNOWN_TYPE of type {record_type}"),
            Event::Unknown { record_type, request_id } => {
                write!(f, "record of unknown type {record_type} for request {request_id}")
            }
        }
    }
}

/// Where the decoder is within the current record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// Between records, or inside a header (`Decoder::header_len` bytes in).
    #[default]
    Header,
    /// Inside a stream record's content.
    Stream { stream: Stream, remaining: usize },
    /// Inside a body that is buffered whole (fixed-size and management).
    Body { remaining: usize },
    /// Skipping bytes: padding, or the content of a record that is ignored.
    Skip { remaining: usize },
}

/// A resumable FastCGI record decoder: feed it whatever bytes arrived, it
/// reports how many it used and at most one [`Event`] per call.
///
/// ```
/// use fastgate::protocol::fastcgi::{self, Decoder, Event, Role};
/// let mut wire = Vec::new();
/// fastcgi::encode_begin_request(&mut wire, 1, Role::Responder, fastcgi::FCGI_KEEP_CONN);
/// let mut dec = Decoder::new();
/// let (used, event) = dec.decode(&wire).unwrap();
/// assert_eq!(used, wire.len());
/// assert_eq!(event, Some(Event::BeginRequest { request_id: 1, role: 1, flags: 1 }));
/// ```
#[derive(Debug, Default)]
pub struct Decoder {
    state: State,
    header: [u8; HEADER_LEN],
    header_len: usize,
    record: Header,
    body: Vec<u8>,
    failed: Option<Error>,
}

/// A buffered body larger than this is not kept for the next record, so an
/// idle connection holds little memory.
const BODY_KEEP: usize = 1024;

impl Decoder {
    /// A decoder at the start of a connection.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Decodes at most one event from the front of `input`. Returns the number of bytes consumed
    /// and the event, if one is complete. `Ok((n, None))` means "need more input" after consuming n
    /// bytes (n may be > 0: a header, padding, or bytes buffered internally). Never panics on any
    /// input; after an Err the decoder is unusable (the host closes the connection).
    /// Stream content is yielded as soon as any of it is present (zero copy), bounded by the record.
    ///
    /// `Ok((n, None))` always has `n == input.len()`: the decoder keeps what
    /// it needs, so the host can drop every byte it fed once it gets `None`.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Event<'a>>), Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.decode_one(input);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// True between records: no partial header, content or padding is
    /// pending, so a connection closing here closed cleanly.
    pub fn is_between_records(&self) -> bool {
        self.state == State::Header && self.header_len == 0 && self.failed.is_none()
    }

    fn decode_one<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Event<'a>>), Error> {
        let mut pos = 0;
        loop {
            let (n, event) = self.step(&input[pos..])?;
            pos += n;
            if event.is_some() {
                // Eat the padding that follows now, so a whole record is
                // usually consumed by a single call.
                pos += self.skip_now(&input[pos..]);
                return Ok((pos, event));
            }
            if n == 0 {
                return Ok((pos, None));
            }
        }
    }

    /// One move of the state machine: consumes > 0 bytes, or yields an
    /// event, or returns `(0, None)` only when `input` is empty.
    fn step<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Event<'a>>), Error> {
        match self.state {
            State::Header => self.read_header(input),
            State::Stream { stream, remaining } => Ok(self.read_stream(input, stream, remaining)),
            State::Body { remaining } => self.read_body(input, remaining),
            State::Skip { .. } => Ok((self.skip_now(input), None)),
        }
    }

    fn read_header<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Event<'a>>), Error> {
        let n = (HEADER_LEN - self.header_len).min(input.len());
        self.header[self.header_len..self.header_len + n].copy_from_slice(&input[..n]);
        self.header_len += n;
        if self.header_len < HEADER_LEN {
            return Ok((n, None));
        }
        self.header_len = 0;
        let header = Header::parse(&self.header);
        Ok((n, self.begin_record(header)?))
    }

    /// Sets up the state for a record whose header just completed; records
    /// that carry everything in their header yield their event at once.
    fn begin_record(&mut self, h: Header) -> Result<Option<Event<'static>>, Error> {
        if h.version != VERSION_1 {
            return Err(Error::BadVersion(h.version));
        }
        self.record = h;
        let len = usize::from(h.content_length);
        let Some(record_type) = RecordType::from_u8(h.record_type) else {
            self.skip_content();
            let (record_type, request_id) = (h.record_type, h.request_id);
            return Ok(Some(Event::Unknown {
                record_type,
                request_id,
            }));
        };
        if let Some(stream) = Stream::from_record_type(record_type) {
            return Ok(self.begin_stream(stream, len));
        }
        self.begin_discrete(record_type, len)
    }

    fn begin_stream(&mut self, stream: Stream, len: usize) -> Option<Event<'static>> {
        if len > 0 {
            self.state = State::Stream {
                stream,
                remaining: len,
            };
            return None;
        }
        self.end_content();
        let request_id = self.record.request_id;
        Some(Event::Stream {
            stream,
            request_id,
            data: &[],
        })
    }

    fn begin_discrete(
        &mut self,
        t: RecordType,
        len: usize,
    ) -> Result<Option<Event<'static>>, Error> {
        let fixed = matches!(
            t,
            RecordType::BeginRequest | RecordType::EndRequest | RecordType::UnknownType
        );
        if fixed && len != 8 {
            let (record_type, length) = (t as u8, self.record.content_length);
            return Err(Error::BadRecordLength {
                record_type,
                length,
            });
        }
        if t == RecordType::AbortRequest {
            // FastCGI 1.0 §5.4: ABORT_REQUEST has no body; any content is ignored.
            self.skip_content();
            return Ok(Some(Event::AbortRequest {
                request_id: self.record.request_id,
            }));
        }
        self.body.clear();
        if len == 0 {
            self.end_content();
            return body_event(&self.record, &[]).map(Some);
        }
        self.state = State::Body { remaining: len };
        Ok(None)
    }

    fn read_stream<'a>(
        &mut self,
        input: &'a [u8],
        stream: Stream,
        remaining: usize,
    ) -> (usize, Option<Event<'a>>) {
        if input.is_empty() {
            return (0, None);
        }
        let n = remaining.min(input.len());
        if n == remaining {
            self.end_content();
        } else {
            self.state = State::Stream {
                stream,
                remaining: remaining - n,
            };
        }
        let request_id = self.record.request_id;
        (
            n,
            Some(Event::Stream {
                stream,
                request_id,
                data: &input[..n],
            }),
        )
    }

    fn read_body<'a>(
        &mut self,
        input: &'a [u8],
        remaining: usize,
    ) -> Result<(usize, Option<Event<'a>>), Error> {
        let n = remaining.min(input.len());
        if n == remaining && self.body.is_empty() {
            // The whole body is here: decode it in place, no copy.
            self.end_content();
            return Ok((n, Some(body_event(&self.record, &input[..n])?)));
        }
        self.body.extend_from_slice(&input[..n]);
        if n < remaining {
            self.state = State::Body {
                remaining: remaining - n,
            };
            return Ok((n, None));
        }
        self.end_content();
        let event = body_event(&self.record, &self.body)?;
        if self.body.capacity() > BODY_KEEP {
            self.body = Vec::new();
        }
        Ok((n, Some(event)))
    }

    /// Skips as much of the pending padding or ignored content as `input` holds.
    fn skip_now(&mut self, input: &[u8]) -> usize {
        let State::Skip { remaining } = self.state else {
            return 0;
        };
        let n = remaining.min(input.len());
        self.state = skip(remaining - n);
        n
    }

    /// The content is done: only the padding is left.
    fn end_content(&mut self) {
        self.state = skip(usize::from(self.record.padding_length));
    }

    /// The whole record (content and padding) is to be ignored.
    fn skip_content(&mut self) {
        let h = &self.record;
        self.state = skip(usize::from(h.content_length) + usize::from(h.padding_length));
    }
}

fn skip(n: usize) -> State {
    if n == 0 {
        State::Header
    } else {
        State::Skip { remaining: n }
    }
}

/// The event of a buffered (fixed-size or management) record body.
fn body_event(h: &Header, body: &[u8]) -> Result<Event<'static>, Error> {
    let request_id = h.request_id;
    match RecordType::from_u8(h.record_type) {
        Some(RecordType::BeginRequest) => {
            let b = fixed_body(h, body)?;
            let role = u16::from_be_bytes([b[0], b[1]]);
            Ok(Event::BeginRequest {
                request_id,
                role,
                flags: b[2],
            })
        }
        Some(RecordType::EndRequest) => {
            let b = fixed_body(h, body)?;
            let app_status = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            Ok(Event::EndRequest {
                request_id,
                app_status,
                protocol_status: b[4],
            })
        }
        Some(RecordType::UnknownType) => Ok(Event::UnknownType {
            record_type: fixed_body(h, body)?[0],
        }),
        Some(RecordType::GetValues) => {
            let names = parse_pairs(body)?
                .into_iter()
                .map(|(n, _)| n.to_vec())
                .collect();
            Ok(Event::GetValues { names })
        }
        Some(RecordType::GetValuesResult) => {
            let pairs = parse_pairs(body)?
                .into_iter()
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect();
            Ok(Event::GetValuesResult { pairs })
        }
        // Not reached: only the types above have their body buffered.
        _ => Ok(Event::Unknown {
            record_type: h.record_type,
            request_id,
        }),
    }
}

/// An 8-byte body as an array (the length was checked with the header).
fn fixed_body(h: &Header, body: &[u8]) -> Result<[u8; 8], Error> {
    body.try_into().map_err(|_| Error::BadRecordLength {
        record_type: h.record_type,
        length: h.content_length,
    })
}

// ---- name-value pairs (FastCGI 1.0 §3.4) ----

/// Appends one name-value pair. Lengths up to 127 take one byte, longer
/// ones four with the high bit set. (A length past 2^31 - 1 cannot be
/// expressed; it is saturated, and no real request comes close.)
pub fn encode_pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    encode_len(out, name.len());
    encode_len(out, value.len());
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

fn encode_len(out: &mut Vec<u8>, len: usize) {
    match u8::try_from(len) {
        Ok(b) if b <= 127 => out.push(b),
        _ => {
            let len = u32::try_from(len).unwrap_or(u32::MAX) | 0x8000_0000;
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
}

/// The byte ranges of each (name, value) in a pair block, in order; an
/// `Err(BadPair)` item ends the iteration. Used by [`parse_pairs`] and by
/// `Params`, which keeps ranges rather than slices.
pub fn pair_ranges(block: &[u8]) -> PairRanges<'_> {
    PairRanges { block, pos: 0 }
}

/// Iterator returned by [`pair_ranges`].
#[derive(Debug, Clone)]
pub struct PairRanges<'a> {
    block: &'a [u8],
    pos: usize,
}

/// One (name, value) pair borrowed from its block.
pub type Pair<'a> = (&'a [u8], &'a [u8]);

/// The (name, value) byte ranges of one pair.
pub type PairRange = (Range<usize>, Range<usize>);

impl Iterator for PairRanges<'_> {
    type Item = Result<PairRange, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.block.len() {
            return None;
        }
        let item = self.read_pair();
        if item.is_err() {
            self.pos = self.block.len();
        }
        Some(item)
    }
}

impl PairRanges<'_> {
    fn read_pair(&mut self) -> Result<PairRange, Error> {
        let name_len = self.read_len()?;
        let value_len = self.read_len()?;
        let name = self.take(name_len)?;
        let value = self.take(value_len)?;
        Ok((name, value))
    }

    fn read_len(&mut self) -> Result<usize, Error> {
        let first = *self.block.get(self.pos).ok_or(Error::BadPair)?;
        if first & 0x80 == 0 {
            self.pos += 1;
            return Ok(usize::from(first));
        }
        let b = self
            .block
            .get(self.pos..self.pos + 4)
            .ok_or(Error::BadPair)?;
        self.pos += 4;
        let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff;
        usize::try_from(len).map_err(|_| Error::BadPair)
    }

    fn take(&mut self, len: usize) -> Result<Range<usize>, Error> {
        let end = self.pos.checked_add(len).filter(|&e| e <= self.block.len());
        let end = end.ok_or(Error::BadPair)?;
        let range = self.pos..end;
        self.pos = end;
        Ok(range)
    }
}

/// Parses a complete pair block. Err(BadPair) on truncation.
pub fn parse_pairs(block: &[u8]) -> Result<Vec<Pair<'_>>, Error> {
    pair_ranges(block)
        .map(|r| r.map(|(n, v)| (&block[n], &block[v])))
        .collect()
}

// ---- encoders ----

/// Appends one record (or, if `content` is longer than 65535 bytes, as
/// many consecutive records of this type as it takes), padded to a
/// multiple of 8 bytes as FastCGI 1.0 §3.3 recommends.
pub fn encode_record(out: &mut Vec<u8>, record_type: RecordType, request_id: u16, content: &[u8]) {
    if content.is_empty() {
        write_record(out, record_type as u8, request_id, &[]);
    }
    encode_stream(out, record_type, request_id, content);
}

/// Splits `data` into as many records of `record_type` as needed; writes nothing for empty data.
pub fn encode_stream(out: &mut Vec<u8>, record_type: RecordType, request_id: u16, data: &[u8]) {
    for chunk in data.chunks(MAX_CONTENT_LEN) {
        write_record(out, record_type as u8, request_id, chunk);
    }
}

/// Like [`encode_stream`] for data that `write` appends to `out` itself
/// (a response head followed by its body, say): written in place behind a
/// header patched afterwards, so the common case of one record costs no
/// second buffer and no second copy. Writes nothing if `write` appends
/// nothing.
pub fn encode_stream_with(
    out: &mut Vec<u8>,
    record_type: RecordType,
    request_id: u16,
    write: impl FnOnce(&mut Vec<u8>),
) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    write(out);
    let len = out.len() - start - HEADER_LEN;
    if len > MAX_CONTENT_LEN {
        let data = out.split_off(start + HEADER_LEN);
        out.truncate(start);
        return encode_stream(out, record_type, request_id, &data);
    }
    if len == 0 {
        return out.truncate(start);
    }
    let padding = (8 - len % 8) % 8;
    let [id_hi, id_lo] = request_id.to_be_bytes();
    let [len_hi, len_lo] = (len as u16).to_be_bytes();
    let header = [
        VERSION_1,
        record_type as u8,
        id_hi,
        id_lo,
        len_hi,
        len_lo,
        padding as u8,
        0,
    ];
    out[start..start + HEADER_LEN].copy_from_slice(&header);
    out.extend_from_slice(&[0u8; 8][..padding]);
}

/// The empty record that ends a stream.
pub fn encode_end_of_stream(out: &mut Vec<u8>, record_type: RecordType, request_id: u16) {
    write_record(out, record_type as u8, request_id, &[]);
}

/// One record; `content` is at most `MAX_CONTENT_LEN` bytes (callers chunk).
fn write_record(out: &mut Vec<u8>, record_type: u8, request_id: u16, content: &[u8]) {
    let len = u16::try_from(content.len()).unwrap_or(u16::MAX);
    let content = &content[..usize::from(len)];
    let padding = (8 - content.len() % 8) % 8;
    let [id_hi, id_lo] = request_id.to_be_bytes();
    let [len_hi, len_lo] = len.to_be_bytes();
    out.reserve(HEADER_LEN + content.len() + padding);
    out.extend_from_slice(&[
        VERSION_1,
        record_type,
        id_hi,
        id_lo,
        len_hi,
        len_lo,
        padding as u8,
        0,
    ]);
    out.extend_from_slice(content);
    out.extend_from_slice(&[0u8; 8][..padding]);
}

/// A BEGIN_REQUEST record (client side; `flags` is 0 or `FCGI_KEEP_CONN`).
pub fn encode_begin_request(out: &mut Vec<u8>, request_id: u16, role: Role, flags: u8) {
    let [r_hi, r_lo] = (role as u16).to_be_bytes();
    let body = [r_hi, r_lo, flags, 0, 0, 0, 0, 0];
    write_record(out, RecordType::BeginRequest as u8, request_id, &body);
}

/// An ABORT_REQUEST record (client side).
pub fn encode_abort_request(out: &mut Vec<u8>, request_id: u16) {
    write_record(out, RecordType::AbortRequest as u8, request_id, &[]);
}

/// An END_REQUEST record: the application's exit status and the protocol status.
pub fn encode_end_request(
    out: &mut Vec<u8>,
    request_id: u16,
    app_status: u32,
    status: ProtocolStatus,
) {
    let [a, b, c, d] = app_status.to_be_bytes();
    let body = [a, b, c, d, status as u8, 0, 0, 0];
    write_record(out, RecordType::EndRequest as u8, request_id, &body);
}

/// PARAMS records for the pairs (split as needed) followed by the empty PARAMS record.
pub fn encode_params(out: &mut Vec<u8>, request_id: u16, pairs: &[(&[u8], &[u8])]) {
    let block = pair_block(pairs.iter().copied());
    encode_stream(out, RecordType::Params, request_id, &block);
    encode_end_of_stream(out, RecordType::Params, request_id);
}

/// A GET_VALUES management record asking for `names`.
pub fn encode_get_values(out: &mut Vec<u8>, names: &[&[u8]]) {
    let block = pair_block(names.iter().map(|n| (*n, &[][..])));
    encode_record(out, RecordType::GetValues, FCGI_NULL_REQUEST_ID, &block);
}

/// A GET_VALUES_RESULT management record.
pub fn encode_get_values_result(out: &mut Vec<u8>, pairs: &[(&[u8], &[u8])]) {
    let block = pair_block(pairs.iter().copied());
    encode_record(
        out,
        RecordType::GetValuesResult,
        FCGI_NULL_REQUEST_ID,
        &block,
    );
}

/// The UNKNOWN_TYPE management record answering a record of `record_type`.
pub fn encode_unknown_type(out: &mut Vec<u8>, record_type: u8) {
    let body = [record_type, 0, 0, 0, 0, 0, 0, 0];
    write_record(
        out,
        RecordType::UnknownType as u8,
        FCGI_NULL_REQUEST_ID,
        &body,
    );
}

fn pair_block<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in pairs {
        encode_pair(&mut block, name, value);
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_event_shown_in_a_log_line_quotes_little_of_its_bytes() {
        let data = vec![b'\n'; 65_535];
        let event = Event::Stream {
            stream: Stream::Stdout,
            request_id: 1,
            data: &data,
        };
        let line = event.to_string();
        assert!(line.len() < 200, "{line}");
        assert!(
            line.starts_with("STDOUT record for request 1, 65535 bytes: \"\\n"),
            "{line}"
        );
        let pairs = vec![(vec![b'x'; 30_000], vec![b'y'; 30_000])];
        let line = Event::GetValuesResult { pairs }.to_string();
        assert_eq!(line, "GET_VALUES_RESULT of 1 pairs");
    }

    /// What a test compares: stream pieces merged per (stream, id) run,
    /// every other event by its debug text.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Stream(Stream, u16, Vec<u8>),
        End(Stream, u16),
        Other(String),
    }

    fn push_seen(seen: &mut Vec<Seen>, event: Event<'_>) {
        match event {
            Event::Stream {
                stream,
                request_id,
                data: [],
            } => seen.push(Seen::End(stream, request_id)),
            Event::Stream {
                stream,
                request_id,
                data,
            } => match seen.last_mut() {
                Some(Seen::Stream(s, id, buf)) if *s == stream && *id == request_id => {
                    buf.extend_from_slice(data)
                }
                _ => seen.push(Seen::Stream(stream, request_id, data.to_vec())),
            },
            other => seen.push(Seen::Other(format!("{other:?}"))),
        }
    }

    /// Feeds `input` in pieces ending at each of `cuts` (then the rest), as
    /// a host would, and checks the decoder's promises on the way.
    fn feed_in_chunks(input: &[u8], cuts: &[usize]) -> Result<Vec<Seen>, Error> {
        let mut dec = Decoder::new();
        let mut seen = Vec::new();
        let mut start = 0;
        for end in cuts.iter().copied().chain([input.len()]) {
            let end = end.clamp(start, input.len());
            let mut chunk = &input[start..end];
            start = end;
            while let (n, Some(event)) = dec.decode(chunk)? {
                assert!(n > 0, "an event from no bytes");
                chunk = &chunk[n..];
                push_seen(&mut seen, event);
            }
        }
        assert!(dec.is_between_records(), "input ended inside a record");
        Ok(seen)
    }

    fn whole(input: &[u8]) -> Vec<Seen> {
        feed_in_chunks(input, &[]).unwrap()
    }

    fn per_byte(input: &[u8]) -> Result<Vec<Seen>, Error> {
        feed_in_chunks(input, &(1..input.len()).collect::<Vec<_>>())
    }

    /// A record with any version and padding, built by hand.
    fn raw(version: u8, record_type: u8, id: u16, content: &[u8], padding: u8) -> Vec<u8> {
        let [ih, il] = id.to_be_bytes();
        let [lh, ll] = (content.len() as u16).to_be_bytes();
        let mut out = vec![version, record_type, ih, il, lh, ll, padding, 0];
        out.extend_from_slice(content);
        out.extend(std::iter::repeat_n(0xAA, usize::from(padding)));
        out
    }

    fn other(event: Event<'_>) -> Seen {
        Seen::Other(format!("{event:?}"))
    }

    #[test]
    fn exact_encoder_bytes() {
        let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (
                enc(|o| encode_begin_request(o, 1, Role::Responder, FCGI_KEEP_CONN)),
                vec![1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0],
            ),
            (
                enc(|o| encode_begin_request(o, 0x0203, Role::Filter, 0)),
                vec![1, 1, 2, 3, 0, 8, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0],
            ),
            (
                enc(|o| encode_abort_request(o, 0x0102)),
                vec![1, 2, 1, 2, 0, 0, 0, 0],
            ),
            (
                enc(|o| encode_end_request(o, 1, 0x01020304, ProtocolStatus::Overloaded)),
                vec![1, 3, 0, 1, 0, 8, 0, 0, 1, 2, 3, 4, 2, 0, 0, 0],
            ),
            (
                enc(|o| encode_stream(o, RecordType::Stdout, 1, b"hello")),
                vec![
                    1, 6, 0, 1, 0, 5, 3, 0, b'h', b'e', b'l', b'l', b'o', 0, 0, 0,
                ],
            ),
            (
                enc(|o| encode_stream(o, RecordType::Stdout, 1, b"")),
                vec![],
            ),
            (
                enc(|o| encode_stream(o, RecordType::Stderr, 1, b"12345678")),
                [&[1, 7, 0, 1, 0, 8, 0, 0][..], b"12345678"].concat(),
            ),
            (
                enc(|o| encode_end_of_stream(o, RecordType::Stdin, 1)),
                vec![1, 5, 0, 1, 0, 0, 0, 0],
            ),
            (
                enc(|o| encode_record(o, RecordType::Data, 9, b"")),
                vec![1, 8, 0, 9, 0, 0, 0, 0],
            ),
            (
                enc(|o| encode_unknown_type(o, 200)),
                vec![1, 11, 0, 0, 0, 8, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0],
            ),
            (
                enc(|o| encode_get_values(o, &[b"FCGI_MAX_REQS"])),
                [
                    &[1, 9, 0, 0, 0, 15, 1, 0, 13, 0][..],
                    b"FCGI_MAX_REQS",
                    &[0],
                ]
                .concat(),
            ),
            (
                enc(|o| encode_get_values_result(o, &[(b"FCGI_MPXS_CONNS", b"1")])),
                [
                    &[1, 10, 0, 0, 0, 18, 6, 0, 15, 1][..],
                    b"FCGI_MPXS_CONNS1",
                    &[0; 6],
                ]
                .concat(),
            ),
            (
                enc(|o| encode_params(o, 1, &[(b"A", b"bc")])),
                [
                    &[1, 4, 0, 1, 0, 5, 3, 0, 1, 2][..],
                    b"Abc",
                    &[0; 3],
                    &[1, 4, 0, 1, 0, 0, 0, 0],
                ]
                .concat(),
            ),
        ];
        for (i, (got, want)) in cases.iter().enumerate() {
            assert_eq!(got, want, "case {i}");
        }
    }

    fn enc(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut out);
        out
    }

    #[test]
    fn pair_length_boundary_127_128() {
        let (n127, n128) = (vec![b'n'; 127], vec![b'n'; 128]);
        let a = enc(|o| encode_pair(o, &n127, b"v"));
        assert_eq!(&a[..2], &[127, 1]);
        let b = enc(|o| encode_pair(o, &n128, b"v"));
        assert_eq!(&b[..5], &[0x80, 0, 0, 128, 1]);
        let c = enc(|o| encode_pair(o, b"n", &vec![b'v'; 0x0001_0203]));
        assert_eq!(&c[..5], &[1, 0x80, 1, 2, 3]);
        for block in [&a, &b, &c] {
            let pairs = parse_pairs(block).unwrap();
            assert_eq!(pairs.len(), 1);
        }
        assert_eq!(parse_pairs(&b).unwrap()[0].0, &n128[..]);
        // The 4-byte form may also carry a short length.
        assert_eq!(
            parse_pairs(&[0x80, 0, 0, 1, 0, b'x']).unwrap(),
            vec![(&b"x"[..], &b""[..])]
        );
    }

    #[test]
    fn truncated_pairs() {
        let block = enc(|o| encode_pair(o, &[b'n'; 200], b"value"));
        for end in 1..block.len() {
            assert_eq!(parse_pairs(&block[..end]), Err(Error::BadPair), "{end}");
        }
        assert_eq!(parse_pairs(&[]).unwrap(), vec![]);
        assert_eq!(
            parse_pairs(&[0xff, 0xff, 0xff, 0xff, 0]),
            Err(Error::BadPair)
        );
    }

    #[test]
    fn every_record_type_decodes() {
        let mut wire = Vec::new();
        encode_begin_request(&mut wire, 1, Role::Authorizer, 0);
        encode_params(&mut wire, 1, &[(b"K", b"V")]);
        encode_stream(&mut wire, RecordType::Stdin, 1, b"in");
        encode_end_of_stream(&mut wire, RecordType::Stdin, 1);
        encode_stream(&mut wire, RecordType::Data, 1, b"data");
        encode_end_of_stream(&mut wire, RecordType::Data, 1);
        encode_abort_request(&mut wire, 1);
        encode_stream(&mut wire, RecordType::Stdout, 1, b"out");
        encode_stream(&mut wire, RecordType::Stderr, 1, b"err");
        encode_end_request(&mut wire, 1, 7, ProtocolStatus::UnknownRole);
        encode_get_values(&mut wire, &[b"FCGI_MAX_CONNS", b"FCGI_MPXS_CONNS"]);
        encode_get_values_result(&mut wire, &[(b"FCGI_MAX_REQS", b"128")]);
        encode_unknown_type(&mut wire, 99);
        wire.extend(raw(1, 12, 5, b"skipped", 1));
        wire.extend(raw(1, 0, 0, b"", 0));
        let want = vec![
            other(Event::BeginRequest {
                request_id: 1,
                role: 2,
                flags: 0,
            }),
            Seen::Stream(Stream::Params, 1, b"\x01\x01KV".to_vec()),
            Seen::End(Stream::Params, 1),
            Seen::Stream(Stream::Stdin, 1, b"in".to_vec()),
            Seen::End(Stream::Stdin, 1),
            Seen::Stream(Stream::Data, 1, b"data".to_vec()),
            Seen::End(Stream::Data, 1),
            other(Event::AbortRequest { request_id: 1 }),
            Seen::Stream(Stream::Stdout, 1, b"out".to_vec()),
            Seen::Stream(Stream::Stderr, 1, b"err".to_vec()),
            other(Event::EndRequest {
                request_id: 1,
                app_status: 7,
                protocol_status: 3,
            }),
            other(Event::GetValues {
                names: vec![b"FCGI_MAX_CONNS".to_vec(), b"FCGI_MPXS_CONNS".to_vec()],
            }),
            other(Event::GetValuesResult {
                pairs: vec![(b"FCGI_MAX_REQS".to_vec(), b"128".to_vec())],
            }),
            other(Event::UnknownType { record_type: 99 }),
            other(Event::Unknown {
                record_type: 12,
                request_id: 5,
            }),
            other(Event::Unknown {
                record_type: 0,
                request_id: 0,
            }),
        ];
        assert_eq!(whole(&wire), want);
        assert_eq!(per_byte(&wire).unwrap(), want);
    }

    #[test]
    fn one_call_consumes_a_whole_record_with_its_padding() {
        let wire = enc(|o| encode_stream(o, RecordType::Stdin, 3, b"abc"));
        let mut dec = Decoder::new();
        let (n, event) = dec.decode(&wire).unwrap();
        assert_eq!(n, wire.len());
        assert_eq!(
            event,
            Some(Event::Stream {
                stream: Stream::Stdin,
                request_id: 3,
                data: b"abc"
            })
        );
        assert!(dec.is_between_records());
        assert_eq!(dec.decode(&[]).unwrap(), (0, None));
    }

    #[test]
    fn stream_pieces_are_never_empty_and_borrow_the_input() {
        let wire = enc(|o| encode_stream(o, RecordType::Stdin, 1, b"abcdef"));
        let mut dec = Decoder::new();
        assert_eq!(dec.decode(&wire[..5]).unwrap(), (5, None));
        assert_eq!(dec.decode(&wire[5..8]).unwrap(), (3, None));
        let (n, event) = dec.decode(&wire[8..10]).unwrap();
        assert_eq!(
            (n, event),
            (
                2,
                Some(Event::Stream {
                    stream: Stream::Stdin,
                    request_id: 1,
                    data: b"ab"
                })
            )
        );
        let rest = &wire[10..];
        let (n, event) = dec.decode(rest).unwrap();
        assert_eq!(n, rest.len());
        let Some(Event::Stream { data, .. }) = event else {
            panic!("{event:?}")
        };
        assert_eq!(data.as_ptr(), rest.as_ptr());
        assert_eq!(data, b"cdef");
    }

    #[test]
    fn any_padding_on_input() {
        for padding in [0u8, 1, 7, 8, 9, 255] {
            let mut wire = raw(1, 5, 1, b"xyz", padding);
            wire.extend(raw(1, 5, 1, b"", padding));
            wire.extend(raw(1, 1, 2, &[0, 1, 0, 0, 0, 0, 0, 0], padding));
            let want = vec![
                Seen::Stream(Stream::Stdin, 1, b"xyz".to_vec()),
                Seen::End(Stream::Stdin, 1),
                other(Event::BeginRequest {
                    request_id: 2,
                    role: 1,
                    flags: 0,
                }),
            ];
            assert_eq!(whole(&wire), want, "padding {padding}");
            assert_eq!(per_byte(&wire).unwrap(), want, "padding {padding}");
        }
    }

    #[test]
    fn bad_version_poisons_the_decoder() {
        let wire = raw(2, 1, 1, &[0; 8], 0);
        let mut dec = Decoder::new();
        assert_eq!(dec.decode(&wire), Err(Error::BadVersion(2)));
        let good = enc(|o| encode_abort_request(o, 1));
        assert_eq!(dec.decode(&good), Err(Error::BadVersion(2)));
        assert!(!dec.is_between_records());
        assert_eq!(per_byte(&raw(0, 5, 1, b"", 0)), Err(Error::BadVersion(0)));
    }

    #[test]
    fn fixed_records_need_eight_bytes() {
        for (record_type, len) in [(1u8, 7usize), (1, 9), (1, 0), (3, 4), (11, 16)] {
            let wire = raw(1, record_type, 1, &vec![0; len], 0);
            let want = Error::BadRecordLength {
                record_type,
                length: len as u16,
            };
            assert_eq!(feed_in_chunks(&wire, &[]), Err(want.clone()));
            // Reported with the header, before any content arrives.
            assert_eq!(Decoder::new().decode(&wire[..HEADER_LEN]), Err(want));
        }
    }

    #[test]
    fn abort_content_is_ignored() {
        let mut wire = raw(1, 2, 4, b"junk", 4);
        encode_abort_request(&mut wire, 5);
        let want = vec![
            other(Event::AbortRequest { request_id: 4 }),
            other(Event::AbortRequest { request_id: 5 }),
        ];
        assert_eq!(whole(&wire), want);
        assert_eq!(per_byte(&wire).unwrap(), want);
    }

    #[test]
    fn bad_management_pairs() {
        let wire = raw(1, 9, 0, &[5, 0, b'a'], 5);
        assert_eq!(feed_in_chunks(&wire, &[]), Err(Error::BadPair));
        assert_eq!(per_byte(&wire), Err(Error::BadPair));
        let empty = raw(1, 9, 0, b"", 0);
        assert_eq!(
            whole(&empty),
            vec![other(Event::GetValues { names: vec![] })]
        );
    }

    #[test]
    fn long_streams_split_at_65535() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let wire = enc(|o| encode_stream(o, RecordType::Stdout, 1, &data));
        let mut pos = 0;
        let mut lengths = Vec::new();
        while pos < wire.len() {
            let h = Header::parse(wire[pos..pos + 8].try_into().unwrap());
            lengths.push(h.content_length);
            pos += 8 + usize::from(h.content_length) + usize::from(h.padding_length);
        }
        assert_eq!(lengths, vec![65535, 65535, 65535, 3395]);
        assert_eq!(
            whole(&wire),
            vec![Seen::Stream(Stream::Stdout, 1, data.clone())]
        );
        let record = enc(|o| encode_record(o, RecordType::Stdin, 1, &data));
        assert_eq!(record.len(), wire.len());
    }

    #[test]
    fn params_split_with_a_pair_straddling_records() {
        let big = vec![b'v'; 70_000];
        let pairs: &[(&[u8], &[u8])] = &[(b"SHORT", b"x"), (b"BIG", &big)];
        let wire = enc(|o| encode_params(o, 7, pairs));
        let mut block = Vec::new();
        for p in pairs {
            encode_pair(&mut block, p.0, p.1);
        }
        assert_eq!(
            whole(&wire),
            vec![
                Seen::Stream(Stream::Params, 7, block),
                Seen::End(Stream::Params, 7)
            ]
        );
    }

    // ---- properties ----

    #[derive(Debug, Clone)]
    enum Rec {
        Begin(u16, Role, u8),
        Abort(u16),
        End(u16, u32, ProtocolStatus),
        Params(u16, Vec<(Vec<u8>, Vec<u8>)>),
        Stream(Stream, u16, Vec<u8>),
        GetValues(Vec<Vec<u8>>),
        GetValuesResult(Vec<(Vec<u8>, Vec<u8>)>),
        UnknownType(u8),
        Unknown(u8, u16, Vec<u8>, u8),
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    fn pairs() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
        proptest::collection::vec((bytes(140), bytes(140)), 0..6)
    }

    fn rec() -> impl Strategy<Value = Rec> {
        let role = prop_oneof![
            Just(Role::Responder),
            Just(Role::Authorizer),
            Just(Role::Filter)
        ];
        let status = prop_oneof![
            Just(ProtocolStatus::RequestComplete),
            Just(ProtocolStatus::CantMpxConn),
            Just(ProtocolStatus::Overloaded),
            Just(ProtocolStatus::UnknownRole)
        ];
        let stream = prop_oneof![
            Just(Stream::Params),
            Just(Stream::Stdin),
            Just(Stream::Data),
            Just(Stream::Stdout),
            Just(Stream::Stderr)
        ];
        prop_oneof![
            (any::<u16>(), role, any::<u8>()).prop_map(|(i, r, f)| Rec::Begin(i, r, f)),
            any::<u16>().prop_map(Rec::Abort),
            (any::<u16>(), any::<u32>(), status).prop_map(|(i, a, s)| Rec::End(i, a, s)),
            (any::<u16>(), pairs()).prop_map(|(i, p)| Rec::Params(i, p)),
            (stream, 0..4u16, bytes(300)).prop_map(|(s, i, d)| Rec::Stream(s, i, d)),
            proptest::collection::vec(bytes(20), 0..4).prop_map(Rec::GetValues),
            pairs().prop_map(Rec::GetValuesResult),
            any::<u8>().prop_map(Rec::UnknownType),
            (12u8.., any::<u16>(), bytes(40), any::<u8>())
                .prop_map(|(t, i, c, p)| Rec::Unknown(t, i, c, p)),
        ]
    }

    fn borrow(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<(&[u8], &[u8])> {
        pairs.iter().map(|(n, v)| (&n[..], &v[..])).collect()
    }

    /// Encodes `r` and appends the events a decoder must report for it.
    fn encode_rec(out: &mut Vec<u8>, want: &mut Vec<Seen>, r: &Rec) {
        let mut expect = |e: Event<'_>| push_seen(want, e);
        match r {
            Rec::Begin(id, role, flags) => {
                encode_begin_request(out, *id, *role, *flags);
                expect(Event::BeginRequest {
                    request_id: *id,
                    role: *role as u16,
                    flags: *flags,
                });
            }
            Rec::Abort(id) => {
                encode_abort_request(out, *id);
                expect(Event::AbortRequest { request_id: *id });
            }
            Rec::End(id, app_status, st) => {
                encode_end_request(out, *id, *app_status, *st);
                expect(Event::EndRequest {
                    request_id: *id,
                    app_status: *app_status,
                    protocol_status: *st as u8,
                });
            }
            Rec::Params(id, pairs) => {
                encode_params(out, *id, &borrow(pairs));
                let block = enc(|b| pairs.iter().for_each(|(n, v)| encode_pair(b, n, v)));
                if !block.is_empty() {
                    expect(Event::Stream {
                        stream: Stream::Params,
                        request_id: *id,
                        data: &block,
                    });
                }
                expect(Event::Stream {
                    stream: Stream::Params,
                    request_id: *id,
                    data: &[],
                });
            }
            Rec::Stream(stream, id, data) => {
                encode_stream(out, stream.record_type(), *id, data);
                encode_end_of_stream(out, stream.record_type(), *id);
                if !data.is_empty() {
                    expect(Event::Stream {
                        stream: *stream,
                        request_id: *id,
                        data,
                    });
                }
                expect(Event::Stream {
                    stream: *stream,
                    request_id: *id,
                    data: &[],
                });
            }
            Rec::GetValues(names) => {
                encode_get_values(out, &names.iter().map(|n| &n[..]).collect::<Vec<_>>());
                expect(Event::GetValues {
                    names: names.clone(),
                });
            }
            Rec::GetValuesResult(pairs) => {
                encode_get_values_result(out, &borrow(pairs));
                expect(Event::GetValuesResult {
                    pairs: pairs.clone(),
                });
            }
            Rec::UnknownType(t) => {
                encode_unknown_type(out, *t);
                expect(Event::UnknownType { record_type: *t });
            }
            Rec::Unknown(t, id, content, padding) => {
                out.extend(raw(1, *t, *id, content, *padding));
                expect(Event::Unknown {
                    record_type: *t,
                    request_id: *id,
                });
            }
        }
    }

    fn conversation() -> impl Strategy<Value = (Vec<u8>, Vec<Seen>)> {
        proptest::collection::vec(rec(), 0..12).prop_map(|recs| {
            let (mut wire, mut want) = (Vec::new(), Vec::new());
            recs.iter()
                .for_each(|r| encode_rec(&mut wire, &mut want, r));
            (wire, want)
        })
    }

    proptest! {
        #[test]
        fn encode_stream_with_writes_what_encode_stream_writes(
            prefix in bytes(20),
            head in bytes(300),
            body_len in prop_oneof![0usize..200, 65_000usize..140_000],
            id in any::<u16>(),
        ) {
            let body: Vec<u8> = (0..body_len).map(|i| i as u8).collect();
            let mut want = prefix.clone();
            encode_stream(&mut want, RecordType::Stdout, id, &[&head[..], &body[..]].concat());
            let mut got = prefix.clone();
            encode_stream_with(&mut got, RecordType::Stdout, id, |out| {
                out.extend_from_slice(&head);
                out.extend_from_slice(&body);
            });
            prop_assert_eq!(got, want);
        }

        #[test]
        fn round_trip((wire, want) in conversation()) {
            prop_assert_eq!(whole(&wire), want);
        }

        #[test]
        fn any_split_yields_the_same_events((wire, want) in conversation(), cuts in proptest::collection::vec(any::<usize>(), 0..20)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
            cuts.sort_unstable();
            prop_assert_eq!(feed_in_chunks(&wire, &cuts).unwrap(), want);
        }

        #[test]
        fn per_byte_yields_the_same_events((wire, want) in conversation()) {
            prop_assert_eq!(per_byte(&wire).unwrap(), want);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(input in bytes(600), cuts in proptest::collection::vec(0usize..600, 0..10)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            prop_assert_eq!(decode_all(&input, &cuts), decode_all(&input, &[]));
        }

        #[test]
        fn never_panics_on_record_like_bytes(input in record_like(), cuts in proptest::collection::vec(0usize..2000, 0..10)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            prop_assert_eq!(decode_all(&input, &cuts), decode_all(&input, &[]));
        }
    }

    /// Headers that are mostly well formed (version 1, small lengths) over
    /// content that may not match them, so the decoder is driven past the
    /// header check into every state.
    fn record_like() -> impl Strategy<Value = Vec<u8>> {
        let version = prop_oneof![8 => Just(1u8), 1 => any::<u8>()];
        let piece = (version, 0u8..14, 0u16..3, 0u16..40, 0u8..12, bytes(60));
        proptest::collection::vec(piece, 0..12).prop_map(|pieces| {
            let mut out = Vec::new();
            for (v, t, id, len, pad, content) in pieces {
                let [ih, il] = id.to_be_bytes();
                let [lh, ll] = len.to_be_bytes();
                out.extend_from_slice(&[v, t, ih, il, lh, ll, pad, 0]);
                out.extend_from_slice(&content);
            }
            out
        })
    }

    /// Events (as text) and the error, if any, without `feed_in_chunks`'s
    /// end-of-input assertion.
    fn decode_all(input: &[u8], cuts: &[usize]) -> (Vec<String>, Option<Error>) {
        let mut dec = Decoder::new();
        let mut seen = Vec::new();
        let mut start = 0;
        for end in cuts.iter().copied().chain([input.len()]) {
            let end = end.clamp(start, input.len());
            let mut chunk = &input[start..end];
            start = end;
            loop {
                match dec.decode(chunk) {
                    Ok((n, Some(event))) => {
                        chunk = &chunk[n..];
                        push_seen(&mut seen, event);
                    }
                    Ok((n, None)) => {
                        assert_eq!(n, chunk.len());
                        break;
                    }
                    Err(e) => return (seen.iter().map(|s| format!("{s:?}")).collect(), Some(e)),
                }
            }
        }
        (seen.iter().map(|s| format!("{s:?}")).collect(), None)
    }
}
