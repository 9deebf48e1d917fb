//! FastCGI 1.0, both directions: a resumable [`Decoder`] that turns bytes
//! into [`Event`]s and encoders that append whole records to a `Vec<u8>`.
//!
//! The decoder is the hot path of the server, so it never copies stream
//! content (PARAMS, STDIN, DATA, STDOUT, STDERR pieces borrow the input) and
//! never allocates per byte; only the small fixed-size and management bodies
//! are buffered, and those are bounded by a record's 65535 bytes of content.
//! It knows nothing of request state: which request ids are active, and what
//! a record means for them, is the host's business (FastCGI 1.0 §3.3).

use std::ops::Range;

use super::Error;

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
    BeginRequest = 1,
    AbortRequest = 2,
    EndRequest = 3,
    Params = 4,
    Stdin = 5,
    Stdout = 6,
    Stderr = 7,
    Data = 8,
    GetValues = 9,
    GetValuesResult = 10,
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
    Responder = 1,
    Authorizer = 2,
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
    RequestComplete = 0,
    CantMpxConn = 1,
    Overloaded = 2,
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
    Params,
    Stdin,
    Data,
    Stdout,
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
    pub version: u8,
    pub record_type: u8,
    pub request_id: u16,
    pub content_length: u16,
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
        request_id: u16,
        role: u16,
        flags: u8,
    },
    AbortRequest {
        request_id: u16,
    },
    EndRequest {
        request_id: u16,
        app_status: u32,
        protocol_status: u8,
    },
    /// A piece of a stream record's content, borrowed from the input. A record may be
    /// delivered in several pieces (as its bytes arrive), never an empty piece, EXCEPT
    /// that a record with content_length 0 yields exactly one event with empty `data`:
    /// the end of that stream.
    Stream {
        stream: Stream,
        request_id: u16,
        data: &'a [u8],
    },
    /// GET_VALUES (management, request id 0): the variables asked for.
    GetValues {
        names: Vec<Vec<u8>>,
    },
    /// GET_VALUES_RESULT: the variables and their values.
    GetValuesResult {
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// An UNKNOWN_TYPE record received (client side).
    UnknownType {
        record_type: u8,
    },
    /// A record whose type is not one of the 11 above (content skipped); a server answers UNKNOWN_TYPE.
    Unknown {
        record_type: u8,
        request_id: u16,
    },
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
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Decodes at most one event from the front of `input`. Returns the number of bytes consumed
    /// and the event, if one is complete. `Ok((n, None))` means "need more input" after consuming n
    /// bytes (n may be > 0: a header, padding, or bytes buffered internally). Never panics on any
    /// input; after an Err the decoder is unusable (the host closes the connection).
    /// Stream content is yielded as soon as any of it is present (zero copy), bounded by the record.
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

pub fn encode_begin_request(out: &mut Vec<u8>, request_id: u16, role: Role, flags: u8) {
    let [r_hi, r_lo] = (role as u16).to_be_bytes();
    let body = [r_hi, r_lo, flags, 0, 0, 0, 0, 0];
    write_record(out, RecordType::BeginRequest as u8, request_id, &body);
}

pub fn encode_abort_request(out: &mut Vec<u8>, request_id: u16) {
    write_record(out, RecordType::AbortRequest as u8, request_id, &[]);
}

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
