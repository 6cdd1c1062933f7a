//! Strict reading of user input: API bodies and job files.
//!
//! Input is first read into an [`Input`] tree by whatever parser fits the format
//! (serde_json for the API, a YAML parser for job files), then turned into the target
//! type by [`from_input`]. That second step is a deserializer of our own, so that the
//! rules hold for every type and every format alike:
//!
//! - objects must be objects: a JSON array is never taken for a struct, whatever serde's
//!   derive would accept;
//! - an object takes only the fields its type declares (the derive's field list), so an
//!   unknown field is an error even on a struct that forgot `deny_unknown_fields`;
//! - a key given twice is an error;
//! - scalars are not converted: a string is a string, an integer must fit its field;
//! - every error names the path of the offending field (`tasks[0].resources.memory`)
//!   and says what was expected in the user's terms, never a Rust type name.

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use std::collections::HashSet;
use std::fmt;

/// A parsed but not yet typed document: what JSON and YAML have in common.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    Null,
    Bool(bool),
    /// Every integer, signed or not, as written.
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<Input>),
    /// Entries in document order; a repeated key is kept, to be reported.
    Map(Vec<(String, Input)>),
}

impl Input {
    fn found(&self) -> Found {
        match self {
            Input::Null => Found::Null,
            Input::Bool(b) => Found::Bool(*b),
            Input::Int(n) => Found::Int(*n),
            Input::Float(f) => Found::Float(*f),
            Input::Str(s) => Found::Str(preview(s)),
            Input::List(_) => Found::List,
            Input::Map(_) => Found::Map,
        }
    }
}

/// What was found where something else was expected, for messages.
#[derive(Clone, Debug, PartialEq)]
pub enum Found {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    /// The string (its start, when long).
    Str(String),
    List,
    Map,
    /// A description given by a type's own deserialization code.
    Described(String),
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Null => f.write_str("null"),
            Found::Bool(b) => write!(f, "a boolean ({b})"),
            Found::Int(n) => write!(f, "the integer {n}"),
            Found::Float(x) => write!(f, "the number {x}"),
            Found::Str(s) => write!(f, "the string {s:?}"),
            Found::List => f.write_str("an array"),
            Found::Map => f.write_str("an object"),
            Found::Described(d) => f.write_str(d),
        }
    }
}

impl From<de::Unexpected<'_>> for Found {
    fn from(u: de::Unexpected<'_>) -> Found {
        use de::Unexpected as U;
        match u {
            U::Bool(b) => Found::Bool(b),
            U::Unsigned(n) => Found::Int(n.into()),
            U::Signed(n) => Found::Int(n.into()),
            U::Float(x) => Found::Float(x),
            U::Char(c) => Found::Str(c.to_string()),
            U::Str(s) => Found::Str(preview(s)),
            U::Bytes(_) => Found::Described("bytes".into()),
            U::Unit | U::Option => Found::Null,
            U::Seq => Found::List,
            U::Map => Found::Map,
            U::NewtypeStruct
            | U::Enum
            | U::UnitVariant
            | U::NewtypeVariant
            | U::TupleVariant
            | U::StructVariant => Found::Described("a value of another kind".into()),
            U::Other(d) => Found::Described(d.to_string()),
        }
    }
}

/// Long strings are cut in messages: the error should not echo a megabyte back.
fn preview(s: &str) -> String {
    const MAX: usize = 60;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Why an input was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InputErrorKind {
    #[error("expected {expected}, found {found}{}", string_hint(expected, found))]
    WrongType { expected: String, found: Found },
    #[error("expected {expected}, found {found}")]
    BadValue { expected: String, found: Found },
    #[error("unknown field; {}", accepted(expected))]
    UnknownField {
        field: String,
        expected: &'static [&'static str],
    },
    #[error("missing; this field is required")]
    MissingField { field: &'static str },
    #[error("given more than once")]
    DuplicateKey { key: String },
    #[error("unknown value {value:?}; expected one of {}", expected.join(", "))]
    UnknownVariant {
        value: String,
        expected: &'static [&'static str],
    },
    #[error("expected {expected}, found {len} elements")]
    WrongLength { len: usize, expected: String },
    /// A message from a type's own deserialization code (serde's `custom` hook).
    #[error("{0}")]
    Message(String),
}

fn accepted(fields: &[&str]) -> String {
    if fields.is_empty() {
        "this object takes no fields".to_string()
    } else {
        format!("expected one of {}", fields.join(", "))
    }
}

fn string_hint(expected: &str, found: &Found) -> &'static str {
    let scalar = matches!(found, Found::Bool(_) | Found::Int(_) | Found::Float(_));
    if expected == STRING && scalar {
        " (put it in quotes to mean the text)"
    } else {
        ""
    }
}

impl InputErrorKind {
    /// The field this error is about, when it names one inside the object it was raised in.
    fn field(&self) -> Option<&str> {
        match self {
            InputErrorKind::UnknownField { field, .. } => Some(field),
            InputErrorKind::MissingField { field } => Some(field),
            InputErrorKind::DuplicateKey { key } => Some(key),
            _ => None,
        }
    }
}

/// A refused input: where, and why.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}{kind}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct InputError {
    path: String,
    kind: InputErrorKind,
    located: bool,
}

impl InputError {
    fn new(kind: InputErrorKind) -> InputError {
        InputError {
            path: String::new(),
            kind,
            located: false,
        }
    }

    fn wrong_type(expected: impl Into<String>, found: &Input) -> InputError {
        InputError::new(InputErrorKind::WrongType {
            expected: expected.into(),
            found: found.found(),
        })
    }

    /// The path of the offending field (`tasks[2].resources.cpu_milli`); empty when the
    /// whole document is at fault.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn kind(&self) -> &InputErrorKind {
        &self.kind
    }

    /// Sets the path once: the innermost value that saw the error knows best. An error
    /// about a field of an object (unknown, missing, repeated) gets that field's path.
    fn at(mut self, path: &Path<'_>) -> InputError {
        if !self.located {
            self.path = match self.kind.field() {
                Some(field) => Path::Field(path, field).to_string(),
                None => path.to_string(),
            };
            self.located = true;
        }
        self
    }
}

impl de::Error for InputError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        InputError::new(InputErrorKind::Message(msg.to_string()))
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        InputError::new(InputErrorKind::WrongType {
            expected: exp.to_string(),
            found: unexp.into(),
        })
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        InputError::new(InputErrorKind::BadValue {
            expected: exp.to_string(),
            found: unexp.into(),
        })
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        InputError::new(InputErrorKind::WrongLength {
            len,
            expected: exp.to_string(),
        })
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        InputError::new(InputErrorKind::UnknownVariant {
            value: preview(variant),
            expected,
        })
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        InputError::new(InputErrorKind::UnknownField {
            field: field.to_string(),
            expected,
        })
    }

    fn missing_field(field: &'static str) -> Self {
        InputError::new(InputErrorKind::MissingField { field })
    }

    fn duplicate_field(field: &'static str) -> Self {
        InputError::new(InputErrorKind::DuplicateKey {
            key: field.to_string(),
        })
    }
}

/// Where a value sits in the document.
#[derive(Clone, Copy, Debug)]
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Field(Path::Root, name) => f.write_str(name),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

const STRING: &str = "a string";
/// Integers up to this size are exact as floating point numbers (2^53).
const MAX_EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;
const OBJECT: &str = "an object";
const ARRAY: &str = "an array";

/// Turns a parsed document into `T`, strictly (see the module's documentation).
pub fn from_input<T: DeserializeOwned>(input: Input) -> Result<T, InputError> {
    T::deserialize(Node {
        input,
        path: &Path::Root,
    })
    .map_err(|e: InputError| e.at(&Path::Root))
}

// ---- reading any self-describing format into an Input ----

impl<'de> de::Deserialize<'de> for Input {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Input, D::Error> {
        d.deserialize_any(InputVisitor)
    }
}

struct InputVisitor;

impl<'de> Visitor<'de> for InputVisitor {
    type Value = Input;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Input, E> {
        Ok(Input::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Input, E> {
        Ok(Input::Int(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Input, E> {
        Ok(Input::Int(v.into()))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Input, E> {
        Ok(Input::Int(v))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Input, E> {
        Ok(i128::try_from(v).map_or(Input::Float(v as f64), Input::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Input, E> {
        Ok(Input::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Input, E> {
        Ok(Input::Str(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Input, E> {
        Ok(Input::Str(v))
    }

    fn visit_unit<E>(self) -> Result<Input, E> {
        Ok(Input::Null)
    }

    fn visit_none<E>(self) -> Result<Input, E> {
        Ok(Input::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Input, D::Error> {
        d.deserialize_any(InputVisitor)
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<Input, D::Error> {
        d.deserialize_any(InputVisitor)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Input, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Input::List(items))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Input, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Input::Map(entries))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Input, A::Error> {
        Err(de::Error::custom(
            "a tagged value (such as a YAML !tag) is not accepted here",
        ))
    }
}

// ---- the strict deserializer ----

struct Node<'p> {
    input: Input,
    path: &'p Path<'p>,
}

impl<'p> Node<'p> {
    fn wrong(&self, expected: impl Into<String>) -> InputError {
        InputError::wrong_type(expected, &self.input).at(self.path)
    }

    fn int(&self, min: i128, max: i128, unsigned: bool) -> Result<i128, InputError> {
        let expected = || {
            if unsigned {
                format!("a whole number from 0 to {max}")
            } else {
                format!("an integer from {min} to {max}")
            }
        };
        // JSON has one kind of number: `3.0` is the integer 3 (as JSON Schema says),
        // when it is exactly one.
        let n = match self.input {
            Input::Int(n) => n,
            Input::Float(x) if x.fract() == 0.0 && x.abs() <= MAX_EXACT_FLOAT => x as i128,
            _ => return Err(self.wrong(expected())),
        };
        if (min..=max).contains(&n) {
            Ok(n)
        } else {
            Err(InputError::new(InputErrorKind::BadValue {
                expected: expected(),
                found: Found::Int(n),
            })
            .at(self.path))
        }
    }
}

macro_rules! integer {
    ($method:ident, $visit:ident, $ty:ty, $unsigned:expr) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
            let n = self.int(<$ty>::MIN as i128, <$ty>::MAX as i128, $unsigned)?;
            visitor
                .$visit(n as $ty)
                .map_err(|e: InputError| e.at(self.path))
        }
    };
}

impl<'de, 'p> de::Deserializer<'de> for Node<'p> {
    type Error = InputError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        let path = self.path;
        let input = match self.input {
            Input::Float(x) if x.fract() == 0.0 && x.abs() <= MAX_EXACT_FLOAT => {
                Input::Int(x as i128)
            }
            other => other,
        };
        match input {
            Input::Null => visitor.visit_unit(),
            Input::Bool(b) => visitor.visit_bool(b),
            Input::Int(n) => match (u64::try_from(n), i64::try_from(n)) {
                (Ok(u), _) => visitor.visit_u64(u),
                (_, Ok(i)) => visitor.visit_i64(i),
                _ => visitor.visit_i128(n),
            },
            Input::Float(x) => visitor.visit_f64(x),
            Input::Str(s) => visitor.visit_string(s),
            Input::List(items) => visit_list(items, path, visitor),
            Input::Map(entries) => visitor.visit_map(MapReader::new(entries, path, None)),
        }
        .map_err(|e: InputError| e.at(path))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        match self.input {
            Input::Bool(b) => visitor
                .visit_bool(b)
                .map_err(|e: InputError| e.at(self.path)),
            _ => Err(self.wrong("true or false")),
        }
    }

    integer!(deserialize_u8, visit_u8, u8, true);
    integer!(deserialize_u16, visit_u16, u16, true);
    integer!(deserialize_u32, visit_u32, u32, true);
    integer!(deserialize_u64, visit_u64, u64, true);
    integer!(deserialize_u128, visit_u128, u128, true);
    integer!(deserialize_i8, visit_i8, i8, false);
    integer!(deserialize_i16, visit_i16, i16, false);
    integer!(deserialize_i32, visit_i32, i32, false);
    integer!(deserialize_i64, visit_i64, i64, false);
    integer!(deserialize_i128, visit_i128, i128, false);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        let x = match self.input {
            Input::Int(n) => n as f64,
            Input::Float(x) if x.is_finite() => x,
            _ => return Err(self.wrong("a finite number")),
        };
        visitor
            .visit_f64(x)
            .map_err(|e: InputError| e.at(self.path))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        let path = self.path;
        match self.input {
            Input::Str(s) if s.chars().count() == 1 => visitor.visit_string(s),
            other => return Err(InputError::wrong_type("a single character", &other).at(path)),
        }
        .map_err(|e: InputError| e.at(path))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        let path = self.path;
        match self.input {
            Input::Str(s) => visitor.visit_string(s).map_err(|e: InputError| e.at(path)),
            other => Err(InputError::wrong_type(STRING, &other).at(path)),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        let path = self.path;
        match self.input {
            Input::Str(s) => visitor
                .visit_byte_buf(s.into_bytes())
                .map_err(|e: InputError| e.at(path)),
            other => Err(InputError::wrong_type(STRING, &other).at(path)),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        let path = self.path;
        match self.input {
            Input::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e: InputError| e.at(path))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        match self.input {
            Input::Null => visitor
                .visit_unit()
                .map_err(|e: InputError| e.at(self.path)),
            _ => Err(self.wrong("null")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, InputError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, InputError> {
        let path = self.path;
        visitor
            .visit_newtype_struct(self)
            .map_err(|e: InputError| e.at(path))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        let path = self.path;
        match self.input {
            Input::List(items) => {
                visit_list(items, path, visitor).map_err(|e: InputError| e.at(path))
            }
            other => Err(InputError::wrong_type(ARRAY, &other).at(path)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, InputError> {
        let path = self.path;
        match self.input {
            Input::List(items) if items.len() == len => {
                visit_list(items, path, visitor).map_err(|e: InputError| e.at(path))
            }
            Input::List(items) => Err(InputError::new(InputErrorKind::WrongLength {
                len: items.len(),
                expected: format!("an array of {len} elements"),
            })
            .at(path)),
            other => Err(InputError::wrong_type(ARRAY, &other).at(path)),
        }
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, InputError> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        let path = self.path;
        match self.input {
            Input::Map(entries) => visitor
                .visit_map(MapReader::new(entries, path, None))
                .map_err(|e: InputError| e.at(path)),
            other => Err(InputError::wrong_type(OBJECT, &other).at(path)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, InputError> {
        let path = self.path;
        match self.input {
            Input::Map(entries) => visitor
                .visit_map(MapReader::new(entries, path, Some(fields)))
                .map_err(|e: InputError| e.at(path)),
            other => Err(InputError::wrong_type(OBJECT, &other).at(path)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, InputError> {
        let path = self.path;
        match self.input {
            Input::Str(s) => visitor.visit_enum(s.into_deserializer()),
            Input::Map(mut entries) if entries.len() == 1 => {
                let (variant, value) = entries.pop().expect("one entry");
                visitor.visit_enum(EnumReader {
                    variant,
                    value,
                    path,
                })
            }
            other => {
                let expected = format!("one of {}", variants.join(", "));
                return Err(InputError::wrong_type(expected, &other).at(path));
            }
        }
        .map_err(|e: InputError| e.at(path))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        visitor.visit_unit()
    }
}

fn visit_list<'de, V: Visitor<'de>>(
    items: Vec<Input>,
    path: &Path<'_>,
    visitor: V,
) -> Result<V::Value, InputError> {
    let len = items.len();
    let mut reader = ListReader {
        items: items.into_iter(),
        index: 0,
        path,
    };
    let value = visitor.visit_seq(&mut reader)?;
    if !reader.items.as_slice().is_empty() {
        return Err(InputError::new(InputErrorKind::WrongLength {
            len,
            expected: format!("{} elements", reader.index),
        }));
    }
    Ok(value)
}

struct ListReader<'p> {
    items: std::vec::IntoIter<Input>,
    index: usize,
    path: &'p Path<'p>,
}

impl<'de> de::SeqAccess<'de> for ListReader<'_> {
    type Error = InputError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, InputError> {
        let Some(input) = self.items.next() else {
            return Ok(None);
        };
        let path = Path::Index(self.path, self.index);
        self.index += 1;
        seed.deserialize(Node { input, path: &path })
            .map(Some)
            .map_err(|e: InputError| e.at(&path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapReader<'p> {
    entries: std::vec::IntoIter<(String, Input)>,
    /// The value of the key just read.
    pending: Option<(String, Input)>,
    seen: HashSet<String>,
    fields: Option<&'static [&'static str]>,
    path: &'p Path<'p>,
}

impl<'p> MapReader<'p> {
    fn new(
        entries: Vec<(String, Input)>,
        path: &'p Path<'p>,
        fields: Option<&'static [&'static str]>,
    ) -> MapReader<'p> {
        MapReader {
            seen: HashSet::with_capacity(entries.len().min(64)),
            entries: entries.into_iter(),
            pending: None,
            fields,
            path,
        }
    }
}

impl<'de> de::MapAccess<'de> for MapReader<'_> {
    type Error = InputError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, InputError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        if let Some(fields) = self.fields
            && !fields.contains(&key.as_str())
        {
            return Err(InputError::new(InputErrorKind::UnknownField {
                field: key,
                expected: fields,
            })
            .at(self.path));
        }
        if !self.seen.insert(key.clone()) {
            return Err(InputError::new(InputErrorKind::DuplicateKey { key }).at(self.path));
        }
        let k =
            seed.deserialize(key.clone().into_deserializer())
                .map_err(|e: InputError| match e.kind.field() {
                    Some(_) => e.at(self.path),
                    None => e.at(&Path::Field(self.path, &key)),
                })?;
        self.pending = Some((key, value));
        Ok(Some(k))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, InputError> {
        let Some((key, input)) = self.pending.take() else {
            return Err(de::Error::custom("a value was read before its key"));
        };
        let path = Path::Field(self.path, &key);
        seed.deserialize(Node { input, path: &path })
            .map_err(|e: InputError| e.at(&path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct EnumReader<'p> {
    variant: String,
    value: Input,
    path: &'p Path<'p>,
}

impl<'de, 'p> de::EnumAccess<'de> for EnumReader<'p> {
    type Error = InputError;
    type Variant = VariantReader<'p>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, VariantReader<'p>), InputError> {
        let v = seed.deserialize(self.variant.clone().into_deserializer())?;
        Ok((
            v,
            VariantReader {
                variant: self.variant,
                value: self.value,
                path: self.path,
            },
        ))
    }
}

struct VariantReader<'p> {
    variant: String,
    value: Input,
    path: &'p Path<'p>,
}

impl<'de> de::VariantAccess<'de> for VariantReader<'_> {
    type Error = InputError;

    fn unit_variant(self) -> Result<(), InputError> {
        match self.value {
            Input::Null => Ok(()),
            other => {
                let path = Path::Field(self.path, &self.variant);
                Err(InputError::wrong_type("null", &other).at(&path))
            }
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, InputError> {
        let path = Path::Field(self.path, &self.variant);
        seed.deserialize(Node {
            input: self.value,
            path: &path,
        })
        .map_err(|e: InputError| e.at(&path))
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, InputError> {
        let path = Path::Field(self.path, &self.variant);
        de::Deserializer::deserialize_tuple(
            Node {
                input: self.value,
                path: &path,
            },
            len,
            visitor,
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, InputError> {
        let path = Path::Field(self.path, &self.variant);
        de::Deserializer::deserialize_struct(
            Node {
                input: self.value,
                path: &path,
            },
            "",
            fields,
            visitor,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobSpec, PolicyConfig, QueuePolicyKind, TaskSpec};

    fn read<T: DeserializeOwned>(json: &str) -> Result<T, InputError> {
        from_input(serde_json::from_str::<Input>(json).unwrap())
    }

    fn err<T: DeserializeOwned + fmt::Debug>(json: &str) -> String {
        read::<T>(json).unwrap_err().to_string()
    }

    #[test]
    fn a_valid_task_reads_as_with_serde_json() {
        let json = r#"{"command":["a","b"],"resources":{"cpu_milli":500,"memory_bytes":1024},
            "after":[1,"k"],"retry":{"max_attempts":3,"backoff":{"initial_ms":5}},
            "constraints":[{"key":"zone","op":"eq","values":["a"]}],"array":{"start":0,"end":3},
            "env":{"A":"1"},"max_runtime_ms":null}"#;
        let strict: TaskSpec = read(json).unwrap();
        let lax: TaskSpec = serde_json::from_str(json).unwrap();
        assert_eq!(strict, lax);
    }

    #[test]
    fn unknown_fields_name_the_path_and_the_accepted_fields() {
        assert_eq!(
            err::<JobSpec>(
                r#"{"tasks":[{"command":["x"],"resources":{"cpu_milli":5,"memory":"2G"}}]}"#
            ),
            "tasks[0].resources.memory: unknown field; expected one of cpu_milli, memory_bytes, disk_bytes, gpus, custom"
        );
        assert!(
            err::<TaskSpec>(r#"{"command":["x"],"bogus":1}"#).starts_with("bogus: unknown field")
        );
    }

    #[test]
    fn objects_must_be_objects() {
        assert_eq!(
            err::<TaskSpec>(r#"["k","",["true"]]"#),
            "expected an object, found an array"
        );
        assert_eq!(
            err::<TaskSpec>(r#"{"command":["x"],"retry":[3]}"#),
            "retry: expected an object, found an array"
        );
    }

    #[test]
    fn scalars_are_not_converted_and_integers_must_fit() {
        assert_eq!(
            err::<TaskSpec>(r#"{"command":[true]}"#),
            "command[0]: expected a string, found a boolean (true) (put it in quotes to mean the text)"
        );
        assert_eq!(
            err::<TaskSpec>(r#"{"command":["x"],"resources":{"cpu_milli":5000000000}}"#),
            "resources.cpu_milli: expected a whole number from 0 to 4294967295, found the integer 5000000000"
        );
        assert_eq!(
            err::<TaskSpec>(r#"{"command":["x"],"priority":1.5}"#),
            "priority: expected an integer from -2147483648 to 2147483647, found the number 1.5"
        );
        let t: TaskSpec = read(r#"{"command":["x"],"priority":3.0}"#).unwrap();
        assert_eq!(t.priority, 3);
        assert_eq!(
            err::<TaskSpec>(r#"{"command":["x"],"shell":"yes"}"#),
            "shell: expected true or false, found the string \"yes\""
        );
        assert_eq!(
            err::<TaskSpec>(r#"{"command":"x"}"#),
            "command: expected an array, found the string \"x\""
        );
    }

    #[test]
    fn repeated_missing_and_mistyped_fields_are_named() {
        assert_eq!(
            err::<TaskSpec>(r#"{"command":["x"],"command":["y"]}"#),
            "command: given more than once"
        );
        assert_eq!(
            err::<TaskSpec>(r#"{"command":["x"],"array":{"start":1}}"#),
            "array.end: missing; this field is required"
        );
        assert_eq!(
            err::<TaskSpec>(r#"{"command":["x"],"after":[true]}"#),
            "after[0]: expected a task id (a whole number) or a task key (a string), found a boolean (true)"
        );
        assert_eq!(
            err::<TaskSpec>(r#"{"command":["x"],"after":[-1]}"#),
            "after[0]: expected a task id (a whole number) or a task key (a string), found the integer -1"
        );
        assert_eq!(
            err::<TaskSpec>(r#"{"command":["x"],"constraints":[{"key":"a","op":"like"}]}"#),
            "constraints[0].op: unknown value \"like\"; expected one of eq, ne, in, not_in, exists, not_exists"
        );
        assert_eq!(
            err::<TaskSpec>(r#"{"command":["x"],"constraints":[{"key":"a","op":3}]}"#),
            "constraints[0].op: expected one of eq, ne, in, not_in, exists, not_exists, found the integer 3"
        );
    }

    #[test]
    fn a_queue_policy_takes_only_its_own_fields() {
        assert_eq!(
            err::<PolicyConfig>(r#"{"queue":{"kind":"fcfs","aging_ms":5}}"#),
            "queue.aging_ms: unknown field; expected one of kind"
        );
        assert_eq!(
            err::<PolicyConfig>(r#"{"queue":{}}"#),
            "queue.kind: missing; this field is required"
        );
        assert_eq!(
            err::<PolicyConfig>(r#"{"queue":{"kind":"multifactor","factors":{"agee":1}}}"#),
            "queue.factors.agee: unknown field; expected one of priority, age, fairshare, size, labels"
        );
        assert_eq!(
            err::<PolicyConfig>(r#"{"queue":{"kind":"multifactor","weights":{}}}"#),
            "queue.weights: unknown field; expected one of kind, factors"
        );
        let p: PolicyConfig = read(r#"{"queue":{"kind":"fair","weights":{"a":2}}}"#).unwrap();
        assert!(matches!(p.queue, QueuePolicyKind::FairShare { .. }));
        // What the log holds reads back, strictly and with serde_json.
        for q in [
            QueuePolicyKind::Fcfs,
            QueuePolicyKind::default(),
            QueuePolicyKind::ShortestJobFirst,
            QueuePolicyKind::FairShare {
                weights: [("a".to_string(), 3)].into(),
            },
            QueuePolicyKind::Multifactor {
                factors: crate::MultifactorWeights::parse("age=1,fairshare=2,label:bv=-3").unwrap(),
            },
        ] {
            let p = PolicyConfig {
                queue: q,
                ..PolicyConfig::default()
            };
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(read::<PolicyConfig>(&json).unwrap(), p);
            assert_eq!(serde_json::from_str::<PolicyConfig>(&json).unwrap(), p);
        }
    }

    #[test]
    fn long_strings_are_cut_in_messages() {
        let long = "y".repeat(1000);
        let e = err::<TaskSpec>(&format!(r#"{{"command":["x"],"shell":"{long}"}}"#));
        assert!(e.len() < 200, "{e}");
    }
}
