//! A small pull cursor over quick-xml's reader: the namespace-aware one when the document
//! has a colon anywhere, the plain one otherwise (no name can then carry a prefix, and
//! elements are matched by local name, so there is nothing to resolve).
//!
//! It turns the event stream into "next child element / end of this element" steps, keeps
//! the nesting depth (including inside skipped subtrees) against [`Limits::max_depth`],
//! refuses DOCTYPE declarations before anything could be expanded, rejects element and
//! attribute prefixes that were never declared, and collects text content borrowed from the
//! input whenever no entity reference forces a copy.

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{QName, ResolveResult};
use quick_xml::{NsReader, Reader};

use crate::error::{DecodeError, DecodeErrorKind, Limits};

/// Most attributes (more exactly, `=` signs in the attribute text) one element may have.
/// The protocol's busiest element has seven; the rest is room for namespace declarations
/// and extensions.
pub(crate) const MAX_ATTRIBUTES: usize = 64;

/// An element the cursor has just entered.
pub(crate) struct Open<'i> {
    pub(crate) start: BytesStart<'i>,
    /// `<x/>`: there is no content and no end event to consume.
    pub(crate) empty: bool,
}

impl Open<'_> {
    /// The element's name without any namespace prefix.
    pub(crate) fn local(&self) -> &[u8] {
        self.start.local_name().into_inner()
    }
}

/// What follows inside the current element.
pub(crate) enum Next<'i> {
    /// A child element was opened.
    Child(Open<'i>),
    /// The current element was closed.
    End,
}

pub(crate) fn malformed(what: impl std::fmt::Display) -> DecodeError {
    DecodeError::new(DecodeErrorKind::Malformed(what.to_string()))
}

/// Where the events come from.
enum Source<'i> {
    /// A document without a colon: no prefix to resolve.
    Plain(Reader<&'i [u8]>),
    /// A document that may use namespace prefixes.
    Namespaced(NsReader<&'i [u8]>),
}

/// The pull cursor.
pub(crate) struct Cursor<'i, 'l> {
    /// The whole document, which every borrowed event slices.
    input: &'i str,
    source: Source<'i>,
    depth: usize,
    limits: &'l Limits,
}

fn configure(config: &mut quick_xml::reader::Config) {
    config.check_end_names = true;
    config.allow_unmatched_ends = false;
    config.expand_empty_elements = false;
    config.trim_text(false);
}

impl<'i, 'l> Cursor<'i, 'l> {
    pub(crate) fn new(text: &'i str, limits: &'l Limits) -> Self {
        let source = if memchr::memchr(b':', text.as_bytes()).is_some() {
            let mut reader = NsReader::from_str(text);
            configure(reader.config_mut());
            Source::Namespaced(reader)
        } else {
            let mut reader = Reader::from_str(text);
            configure(reader.config_mut());
            Source::Plain(reader)
        };
        Self {
            input: text,
            source,
            depth: 0,
            limits,
        }
    }

    /// `part` as the piece of the document it was sliced from: the document was checked to
    /// be UTF-8 once, so a piece of it need not be checked again. `None` if `part` did not
    /// come from the document (an owned copy) or does not fall on character boundaries.
    fn piece_of_input(&self, part: &[u8]) -> Option<&'i str> {
        let start = (part.as_ptr() as usize).checked_sub(self.input.as_ptr() as usize)?;
        self.input.get(start..start.checked_add(part.len())?)
    }

    /// The limits this cursor enforces.
    pub(crate) fn limits(&self) -> &'l Limits {
        self.limits
    }

    fn event(&mut self) -> Result<Event<'i>, DecodeError> {
        let event = match &mut self.source {
            Source::Plain(reader) => reader.read_event(),
            Source::Namespaced(reader) => reader.read_event(),
        };
        match event {
            Ok(Event::DocType(_)) => Err(DecodeErrorKind::DoctypeForbidden.into()),
            Ok(event) => Ok(event),
            Err(e) => Err(malformed(e)),
        }
    }

    /// Namespace well-formedness: every prefix used on the element or its attributes must be
    /// declared. Names are matched by local name afterwards, so the namespace URI itself is
    /// not otherwise looked at.
    fn check_prefixes(&self, start: &BytesStart<'_>) -> Result<(), DecodeError> {
        let Source::Namespaced(reader) = &self.source else {
            // Without a colon in the document, no name has a prefix.
            return Ok(());
        };
        if start.name().prefix().is_some()
            && let (ResolveResult::Unknown(prefix), _) = reader.resolve_element(start.name())
        {
            return Err(malformed(format_args!(
                "namespace prefix {:?} is not declared",
                String::from_utf8_lossy(&prefix)
            )));
        }
        // Only a colon somewhere in the attributes can make one of them prefixed; most
        // elements have none, and their attributes need not be parsed twice.
        if !start.attributes_raw().contains(&b':') {
            return Ok(());
        }
        for attr in start.attributes() {
            let attr = attr.map_err(malformed)?;
            let key = attr.key;
            if key.prefix().is_some()
                && key.as_namespace_binding().is_none()
                && let (ResolveResult::Unknown(prefix), _) = reader.resolve_attribute(key)
            {
                return Err(malformed(format_args!(
                    "namespace prefix {:?} is not declared",
                    String::from_utf8_lossy(&prefix)
                )));
            }
        }
        Ok(())
    }

    /// Enters an element: depth, attribute count and namespace checks.
    fn enter(&mut self, start: BytesStart<'i>, empty: bool) -> Result<Open<'i>, DecodeError> {
        let depth = self.depth + 1;
        if depth > self.limits.max_depth {
            return Err(DecodeErrorKind::TooDeep {
                limit: self.limits.max_depth,
            }
            .into());
        }
        // Every attribute needs an `=`. Counting them bounds the quadratic duplicate-name
        // check of the attribute iterator before it ever runs.
        if start
            .attributes_raw()
            .iter()
            .filter(|&&b| b == b'=')
            .count()
            > MAX_ATTRIBUTES
        {
            return Err(DecodeErrorKind::TooMany {
                what: "attributes on one element",
                limit: MAX_ATTRIBUTES,
            }
            .into());
        }
        self.check_prefixes(&start)?;
        if !empty {
            self.depth = depth;
        }
        Ok(Open { start, empty })
    }

    /// Skips the prolog (declaration, comments, processing instructions, white space) and
    /// enters the root element.
    pub(crate) fn root(&mut self) -> Result<Open<'i>, DecodeError> {
        loop {
            match self.event()? {
                Event::Start(start) => return self.enter(start, false),
                Event::Empty(start) => return self.enter(start, true),
                Event::Text(text) if is_xml_space(&text) => {}
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
                Event::Eof => return Err(malformed("no root element")),
                _ => return Err(malformed("content before the root element")),
            }
        }
    }

    /// After the root element closed: only comments, processing instructions and white space
    /// may follow.
    pub(crate) fn finish(&mut self) -> Result<(), DecodeError> {
        loop {
            match self.event()? {
                Event::Eof => return Ok(()),
                Event::Text(text) if is_xml_space(&text) => {}
                Event::Comment(_) | Event::PI(_) => {}
                _ => return Err(malformed("content after the root element")),
            }
        }
    }

    /// The next child of the element most recently entered with content, or its end.
    /// Text between children is ignored.
    pub(crate) fn next(&mut self) -> Result<Next<'i>, DecodeError> {
        loop {
            match self.event()? {
                Event::Start(start) => return self.enter(start, false).map(Next::Child),
                Event::Empty(start) => return self.enter(start, true).map(Next::Child),
                Event::End(_) => {
                    self.depth = self.depth.saturating_sub(1);
                    return Ok(Next::End);
                }
                Event::Eof => return Err(malformed("unexpected end of document")),
                Event::Decl(_) => return Err(malformed("misplaced XML declaration")),
                // Text between child elements (and in skipped subtrees) is ignored, references
                // included: they are only resolved where a value is read.
                Event::GeneralRef(_)
                | Event::Text(_)
                | Event::CData(_)
                | Event::Comment(_)
                | Event::PI(_)
                | Event::DocType(_) => {}
            }
        }
    }

    /// Skips the rest of an element entered with [`Cursor::next`] or [`Cursor::root`],
    /// counting depth inside it.
    pub(crate) fn skip(&mut self, open: &Open<'i>) -> Result<(), DecodeError> {
        if open.empty {
            return Ok(());
        }
        // `enter` raised the depth for this element; read until it drops back below it.
        let base = self.depth.saturating_sub(1);
        while self.depth > base {
            self.next()?;
        }
        Ok(())
    }

    /// The text content of an element, with character and predefined entity references
    /// resolved. Child elements inside it are skipped. Borrowed from the input unless a
    /// reference or a line-end normalisation forced a copy.
    pub(crate) fn text(&mut self, open: &Open<'i>) -> Result<Cow<'i, str>, DecodeError> {
        if open.empty {
            return Ok(Cow::Borrowed(""));
        }
        let mut acc: Option<Cow<'i, str>> = None;
        loop {
            match self.event()? {
                Event::Text(text) => {
                    // Without a carriage return there is no line end to normalise, and
                    // the text is the document's own bytes.
                    let borrowed = match memchr::memchr(b'\r', &text) {
                        None => self.piece_of_input(&text),
                        Some(_) => None,
                    };
                    let piece = match borrowed {
                        Some(piece) => Cow::Borrowed(piece),
                        None => text.xml10_content().map_err(malformed)?,
                    };
                    append(&mut acc, piece);
                }
                Event::CData(cdata) => {
                    let piece = cdata.xml10_content().map_err(malformed)?;
                    append(&mut acc, piece);
                }
                Event::GeneralRef(reference) => {
                    let piece = resolve_reference(&reference)?;
                    let mut buf = [0u8; 4];
                    append(&mut acc, Cow::Owned(piece.encode_utf8(&mut buf).to_owned()));
                }
                Event::Start(start) => {
                    let child = self.enter(start, false)?;
                    self.skip(&child)?;
                }
                Event::Empty(start) => {
                    self.enter(start, true)?;
                }
                Event::End(_) => {
                    self.depth = self.depth.saturating_sub(1);
                    return Ok(acc.unwrap_or(Cow::Borrowed("")));
                }
                Event::Eof => return Err(malformed("unexpected end of document")),
                Event::Decl(_) => return Err(malformed("misplaced XML declaration")),
                Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            }
        }
    }

    /// The value of an unprefixed attribute, unescaped.
    pub(crate) fn attributes(
        &self,
        open: &Open<'i>,
        mut each: impl FnMut(&[u8], Cow<'_, str>) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        let decoder = match &self.source {
            Source::Plain(reader) => reader.decoder(),
            Source::Namespaced(reader) => reader.decoder(),
        };
        for attr in open.start.attributes() {
            let attr = attr.map_err(malformed)?;
            if attr.key.prefix().is_some() || attr.key == QName(b"xmlns") {
                continue;
            }
            // A value without a reference is the document's own text, as it stands.
            let plain = match &attr.value {
                Cow::Borrowed(raw) if memchr::memchr(b'&', raw).is_none() => {
                    self.piece_of_input(raw)
                }
                _ => None,
            };
            let value = match plain {
                Some(value) => Cow::Borrowed(value),
                None => attr.decode_and_unescape_value(decoder).map_err(malformed)?,
            };
            each(attr.key.local_name().into_inner(), value)?;
        }
        Ok(())
    }
}

fn append<'i>(acc: &mut Option<Cow<'i, str>>, piece: Cow<'i, str>) {
    match acc {
        None => *acc = Some(piece),
        Some(existing) => existing.to_mut().push_str(&piece),
    }
}

/// Resolves `&name;`: the five predefined entities and character references. Anything else
/// names an entity that could only come from a DTD, which is never accepted.
fn resolve_reference(reference: &quick_xml::events::BytesRef<'_>) -> Result<char, DecodeError> {
    if reference.is_char_ref() {
        return match reference.resolve_char_ref() {
            Ok(Some(c)) if is_xml_char(c) => Ok(c),
            _ => Err(malformed("invalid character reference")),
        };
    }
    match &**reference {
        b"lt" => Ok('<'),
        b"gt" => Ok('>'),
        b"amp" => Ok('&'),
        b"apos" => Ok('\''),
        b"quot" => Ok('"'),
        _ => Err(malformed("reference to an undefined entity")),
    }
}

/// The XML 1.0 `Char` production (surrogates cannot occur in a `char`).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{FFFD}' | '\u{10000}'..)
}

fn is_xml_space(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// XML white space (the `S` production): space, tab, CR, LF.
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Trims XML white space from both ends without copying a borrowed value.
pub(crate) fn trim(value: Cow<'_, str>) -> Cow<'_, str> {
    match value {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim_matches(is_space)),
        Cow::Owned(s) => {
            let trimmed = s.trim_matches(is_space);
            if trimmed.len() == s.len() {
                Cow::Owned(s)
            } else {
                Cow::Owned(trimmed.to_owned())
            }
        }
    }
}
