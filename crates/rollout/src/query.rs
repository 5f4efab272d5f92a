//! The device filter of a rollout: a small language, parsed by hand into a tree and evaluated
//! in memory. It never becomes SQL.
//!
//! ```text
//! model = "acme-mfp-9000" and site in ("berlin", "paris")
//!   and unit.controller.model = "ctl-x2" and software.ctl-firmware < "5.3.0"
//!   and not tag = "vip"
//! ```
//!
//! - fields: `id`, `model`, `site`, `tag`, `unit.<slot or kind>.model`,
//!   `unit.<slot or kind>.kind`, `unit.<slot or kind>.hw_revision`, `software.<product>`;
//! - operators: `=`, `!=`, `~` (a pattern: `*` any run of characters, `?` one), `in (…)`, and
//!   for `software.<product>` also `<`, `<=`, `>`, `>=` in the vendor version order;
//! - `and`, `or`, `not`, parentheses; values are double-quoted strings (`\"` and `\\` escape).
//!
//! `unit.X.…` holds when some unit whose slot or kind is X matches; `software.P …` when the
//! device runs P (active) in a matching version; `tag = "t"` when the device has tag t. `!=` is
//! `not =`. An empty filter selects every device.

use fleetcare_compat::version::Version;

/// Longest filter accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;
/// Deepest nesting of `not` and parentheses.
pub const MAX_DEPTH: usize = 32;
/// Most conditions in one filter.
pub const MAX_CONDITIONS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the filter is not valid at character {at}: {message}")]
pub struct FilterError {
    /// Character offset (from 0) where the problem is.
    pub at: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitAttr {
    Model,
    Kind,
    HwRevision,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Id,
    Model,
    Site,
    Tag,
    Unit(String, UnitAttr),
    Software(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
}

/// A value, with its version parsed where the field is software.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub text: String,
    pub version: Option<Version>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    All,
    Cond(Field, Op, Value),
    In(Field, Vec<Value>),
    Not(Box<Filter>),
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

/// What a filter looks at.
pub trait Subject {
    fn id(&self) -> &str;
    fn model(&self) -> &str;
    fn site(&self) -> Option<&str>;
    fn has_tag(&self, tag: &str) -> bool;
    /// Does some unit whose slot or kind is `name` satisfy `f` on (kind, model, hw revision)?
    fn any_unit(&self, name: &str, f: &mut dyn FnMut(&str, &str, &str) -> bool) -> bool;
    /// Does some active software `product` satisfy `f` on its version text?
    fn any_software(&self, product: &str, f: &mut dyn FnMut(&str) -> bool) -> bool;
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Op(Op),
    LParen,
    RParen,
    Comma,
}

fn lex(text: &str) -> Result<Vec<(usize, Tok)>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |at: usize, m: &str| FilterError {
        at,
        message: m.to_owned(),
    };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push((start, Tok::LParen));
                i += 1;
            }
            ')' => {
                out.push((start, Tok::RParen));
                i += 1;
            }
            ',' => {
                out.push((start, Tok::Comma));
                i += 1;
            }
            '"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err(err(start, "a string is not closed (a missing \")")),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => match chars.get(i + 1) {
                            Some(e @ ('"' | '\\')) => {
                                s.push(*e);
                                i += 2;
                            }
                            _ => return Err(err(i, "only \\\" and \\\\ are escapes")),
                        },
                        Some(c) if c.is_control() => {
                            return Err(err(i, "control characters are not allowed"));
                        }
                        Some(c) => {
                            s.push(*c);
                            i += 1;
                        }
                    }
                }
                out.push((start, Tok::Str(s)));
            }
            '=' => {
                out.push((start, Tok::Op(Op::Eq)));
                i += 1;
            }
            '~' => {
                out.push((start, Tok::Op(Op::Like)));
                i += 1;
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push((start, Tok::Op(Op::Ne)));
                i += 2;
            }
            '<' | '>' => {
                let eq = chars.get(i + 1) == Some(&'=');
                let op = match (c, eq) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                };
                out.push((start, Tok::Op(op)));
                i += if eq { 2 } else { 1 };
            }
            c if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':') => {
                while chars.get(i).is_some_and(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')
                }) {
                    i += 1;
                }
                out.push((start, Tok::Word(chars[start..i].iter().collect())));
            }
            other => {
                return Err(err(
                    start,
                    &format!("{other:?} is not part of the language"),
                ));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    conditions: usize,
}

impl Parser {
    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |t| t.0)
    }

    fn err(&self, m: impl Into<String>) -> FilterError {
        FilterError {
            at: self.at(),
            message: m.into(),
        }
    }

    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some((_, Tok::Word(x))) if x.eq_ignore_ascii_case(w))
    }

    fn or(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut parts = vec![self.and(depth)?];
        while self.peek_word("or") {
            self.pos += 1;
            parts.push(self.and(depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one")
        } else {
            Filter::Or(parts)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut parts = vec![self.unary(depth)?];
        while self.peek_word("and") {
            self.pos += 1;
            parts.push(self.unary(depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one")
        } else {
            Filter::And(parts)
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if depth >= MAX_DEPTH {
            return Err(self.err(format!("nested more than {MAX_DEPTH} deep")));
        }
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.unary(depth + 1)?)));
        }
        if matches!(self.toks.get(self.pos), Some((_, Tok::LParen))) {
            self.pos += 1;
            let inner = self.or(depth + 1)?;
            if !matches!(self.toks.get(self.pos), Some((_, Tok::RParen))) {
                return Err(self.err("a ( is not closed"));
            }
            self.pos += 1;
            return Ok(inner);
        }
        self.cond()
    }

    fn field(&mut self) -> Result<Field, FilterError> {
        let Some((_, Tok::Word(w))) = self.toks.get(self.pos).cloned() else {
            return Err(self.err(
                "expected a field: id, model, site, tag, unit.<slot>.model|kind|hw_revision, \
                 software.<product>",
            ));
        };
        let f = match w.as_str() {
            "id" => Field::Id,
            "model" => Field::Model,
            "site" => Field::Site,
            "tag" => Field::Tag,
            w if w.starts_with("unit.") => {
                let rest = &w["unit.".len()..];
                let (name, attr) = rest.rsplit_once('.').ok_or_else(|| {
                    self.err("unit fields are unit.<slot or kind>.model|kind|hw_revision")
                })?;
                let attr = match attr {
                    "model" => UnitAttr::Model,
                    "kind" => UnitAttr::Kind,
                    "hw_revision" => UnitAttr::HwRevision,
                    other => {
                        return Err(self.err(format!(
                            "unit attribute {other:?}: one of model, kind, hw_revision"
                        )));
                    }
                };
                if name.is_empty() {
                    return Err(self.err("unit.<slot or kind>: the slot or kind is missing"));
                }
                Field::Unit(name.to_owned(), attr)
            }
            w if w.starts_with("software.") && w.len() > "software.".len() => {
                Field::Software(w["software.".len()..].to_owned())
            }
            other => return Err(self.err(format!("{other:?} is not a field"))),
        };
        self.pos += 1;
        Ok(f)
    }

    fn value(&mut self, field: &Field) -> Result<Value, FilterError> {
        let Some((_, Tok::Str(s))) = self.toks.get(self.pos).cloned() else {
            return Err(self.err("expected a value in double quotes"));
        };
        let version = match field {
            Field::Software(_) => Some(
                Version::parse(&s).map_err(|e| self.err(format!("{s:?} is not a version: {e}")))?,
            ),
            _ => None,
        };
        self.pos += 1;
        Ok(Value { text: s, version })
    }

    fn cond(&mut self) -> Result<Filter, FilterError> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(self.err(format!("more than {MAX_CONDITIONS} conditions")));
        }
        let field = self.field()?;
        if self.peek_word("in") {
            self.pos += 1;
            if !matches!(self.toks.get(self.pos), Some((_, Tok::LParen))) {
                return Err(self.err("in needs a list: in (\"a\", \"b\")"));
            }
            self.pos += 1;
            let mut values = vec![self.value(&field)?];
            while matches!(self.toks.get(self.pos), Some((_, Tok::Comma))) {
                self.pos += 1;
                values.push(self.value(&field)?);
            }
            if !matches!(self.toks.get(self.pos), Some((_, Tok::RParen))) {
                return Err(self.err("the list is not closed with )"));
            }
            self.pos += 1;
            return Ok(Filter::In(field, values));
        }
        let Some((_, Tok::Op(op))) = self.toks.get(self.pos).cloned() else {
            return Err(self.err("expected an operator: = != ~ < <= > >= or in"));
        };
        let ordered = matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge);
        if ordered && !matches!(field, Field::Software(_)) {
            return Err(self.err("< <= > >= compare software versions only"));
        }
        self.pos += 1;
        let value = self.value(&field)?;
        Ok(Filter::Cond(field, op, value))
    }
}

impl Filter {
    /// Parse a filter; an empty one selects every device.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        if text.len() > MAX_FILTER_BYTES {
            return Err(FilterError {
                at: MAX_FILTER_BYTES,
                message: format!("longer than {MAX_FILTER_BYTES} bytes"),
            });
        }
        let toks = lex(text)?;
        if toks.is_empty() {
            return Ok(Filter::All);
        }
        let mut p = Parser {
            toks,
            pos: 0,
            end: text.chars().count(),
            conditions: 0,
        };
        let f = p.or(0)?;
        if p.pos < p.toks.len() {
            return Err(p.err("expected and, or, or the end of the filter"));
        }
        Ok(f)
    }

    /// Does the device match?
    pub fn matches(&self, d: &dyn Subject) -> bool {
        match self {
            Filter::All => true,
            Filter::Not(f) => !f.matches(d),
            Filter::And(fs) => fs.iter().all(|f| f.matches(d)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(d)),
            Filter::In(field, values) => values.iter().any(|v| cond(d, field, Op::Eq, v)),
            Filter::Cond(field, Op::Ne, v) => !cond(d, field, Op::Eq, v),
            Filter::Cond(field, op, v) => cond(d, field, *op, v),
        }
    }
}

/// `*` any run of characters, `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn text_op(op: Op, have: &str, want: &str) -> bool {
    match op {
        Op::Like => glob(want, have),
        _ => have == want,
    }
}

fn cond(d: &dyn Subject, field: &Field, op: Op, v: &Value) -> bool {
    match field {
        Field::Id => text_op(op, d.id(), &v.text),
        Field::Model => text_op(op, d.model(), &v.text),
        Field::Site => d.site().is_some_and(|s| text_op(op, s, &v.text)),
        Field::Tag => match op {
            Op::Like => false,
            _ => d.has_tag(&v.text),
        },
        Field::Unit(name, attr) => d.any_unit(name, &mut |kind, model, rev| {
            let have = match attr {
                UnitAttr::Model => model,
                UnitAttr::Kind => kind,
                UnitAttr::HwRevision => rev,
            };
            text_op(op, have, &v.text)
        }),
        Field::Software(product) => d.any_software(product, &mut |have| {
            if op == Op::Like {
                return glob(&v.text, have);
            }
            let (Ok(have), Some(want)) = (Version::parse(have), v.version.as_ref()) else {
                return op == Op::Eq && have == v.text;
            };
            match op {
                Op::Lt => have < *want,
                Op::Le => have <= *want,
                Op::Gt => have > *want,
                Op::Ge => have >= *want,
                _ => have == *want,
            }
        }),
    }
}
