//! A small statement executor both backends implement, so that most store methods are written
//! once (in terms of [`Stmt`] and [`Store::run`] / [`Store::select`]) instead of twice.
//!
//! Values are untyped ([`Val`]); a query names the type of each column it reads ([`Ty`]), so
//! both backends decode alike. SQL is written with `$N` placeholders; where the dialects differ,
//! a statement carries both texts ([`Sql::Each`]).

use std::borrow::Cow;

use crate::{Result, Store, StoreError};

/// A parameter or a column value. A null parameter says its type (PostgreSQL wants it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    NullText,
    Int(i64),
    Text(String),
}

impl Val {
    pub fn int(&self) -> Result<i64> {
        match self {
            Val::Int(i) => Ok(*i),
            other => Err(StoreError::Corrupt(format!(
                "expected an integer, got {other:?}"
            ))),
        }
    }

    pub fn opt_int(&self) -> Result<Option<i64>> {
        match self {
            Val::Null | Val::NullText => Ok(None),
            v => v.int().map(Some),
        }
    }

    pub fn text(&self) -> Result<String> {
        match self {
            Val::Text(s) => Ok(s.clone()),
            other => Err(StoreError::Corrupt(format!("expected text, got {other:?}"))),
        }
    }

    pub fn opt_text(&self) -> Result<Option<String>> {
        match self {
            Val::Null | Val::NullText => Ok(None),
            v => v.text().map(Some),
        }
    }
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}

impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_owned())
    }
}

impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}

impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(v.clone())
    }
}

impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Int(i64::from(v))
    }
}

impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Val::Null, Val::Int)
    }
}

impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        v.map_or(Val::NullText, Val::Text)
    }
}

impl From<Option<&str>> for Val {
    fn from(v: Option<&str>) -> Self {
        v.map_or(Val::NullText, |s| Val::Text(s.to_owned()))
    }
}

/// The type of a column a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Int,
    Text,
}

/// SQL text, the same for both backends or one per backend.
#[derive(Debug, Clone)]
pub(crate) enum Sql {
    Both(Cow<'static, str>),
    Each {
        sqlite: &'static str,
        postgres: &'static str,
    },
}

impl Sql {
    pub fn sqlite(&self) -> Cow<'_, str> {
        match self {
            Sql::Both(s) => Cow::Owned(s.replace('$', "?")),
            Sql::Each { sqlite, .. } => Cow::Owned(sqlite.replace('$', "?")),
        }
    }

    pub fn postgres(&self) -> &str {
        match self {
            Sql::Both(s) => s,
            Sql::Each { postgres, .. } => postgres,
        }
    }
}

/// SQL text the same for both backends.
pub(crate) fn sql(s: &'static str) -> Sql {
    Sql::Both(Cow::Borrowed(s))
}

/// One statement with its parameters.
#[derive(Debug, Clone)]
pub(crate) struct Stmt {
    pub sql: Sql,
    pub params: Vec<Val>,
    /// The statement ends in `RETURNING <one integer>`: its result is that value (0 when it
    /// returns no row), not the number of rows changed.
    pub returns_int: bool,
}

impl Stmt {
    pub fn new(sql: &'static str, params: Vec<Val>) -> Stmt {
        Stmt {
            sql: Sql::Both(Cow::Borrowed(sql)),
            params,
            returns_int: false,
        }
    }

    /// A statement whose text is made at run time (from a fixed set of texts, so that
    /// prepared statements are still reused).
    pub fn owned(sql: String, params: Vec<Val>) -> Stmt {
        Stmt {
            sql: Sql::Both(Cow::Owned(sql)),
            params,
            returns_int: false,
        }
    }

    pub fn each(sqlite: &'static str, postgres: &'static str, params: Vec<Val>) -> Stmt {
        Stmt {
            sql: Sql::Each { sqlite, postgres },
            params,
            returns_int: false,
        }
    }

    /// A statement that returns one integer (an id).
    pub fn returning(sql: &'static str, params: Vec<Val>) -> Stmt {
        Stmt {
            returns_int: true,
            ..Stmt::new(sql, params)
        }
    }
}

/// How a batch of statements runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guard {
    /// Run every statement.
    None,
    /// If the first statement changes no row, run none of the others (nothing is changed).
    First,
}

/// Statements that run together, with their guard.
pub(crate) type Group = (Vec<Stmt>, Guard);

impl Store {
    /// Run statements in one transaction; the rows each changed (or the integer it returned).
    pub(crate) async fn run(&self, stmts: Vec<Stmt>, guard: Guard) -> Result<Vec<u64>> {
        let mut out = self.run_groups(vec![(stmts, guard)]).await?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Run one statement; whether it changed exactly one row.
    pub(crate) async fn changed_one(&self, stmt: Stmt) -> Result<bool> {
        let n = self.run(vec![stmt], Guard::None).await?;
        Ok(n.first().copied() == Some(1))
    }

    /// Run groups of statements in one transaction; each group's guard applies to it alone.
    pub(crate) async fn run_groups(&self, groups: Vec<Group>) -> Result<Vec<Vec<u64>>> {
        match self {
            Store::Sqlite(s) => s.run_groups(groups).await,
            Store::Postgres(s) => s.run_groups(groups).await,
        }
    }

    /// Rows of a query, each column decoded as `types` says.
    pub(crate) async fn select(
        &self,
        sql: Sql,
        params: Vec<Val>,
        types: &'static [Ty],
    ) -> Result<Vec<Vec<Val>>> {
        match self {
            Store::Sqlite(s) => s.select(sql, params, types).await,
            Store::Postgres(s) => s.select(sql, params, types).await,
        }
    }
}
