//! SQL text with bound parameters that diesel keeps as a prepared
//! statement. `diesel::sql_query` (with or without `.bind`) is never
//! cached (its AST marks itself unsafe to cache), so a hot statement
//! written as SQL text is parsed and planned on every call. A [`Cached`]
//! statement is cached by its text, which must therefore be the same on
//! every call: values go in as bind parameters, never as literals. It is
//! parsed once per connection; PostgreSQL may still plan it per call
//! (`plan_cache_mode = auto` keeps custom plans while the generic one is
//! estimated costlier, as for the push worker's due probe, whose generic
//! plan is indeed much slower: docs/PERFORMANCE.md).

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Text, Untyped};
use diesel::{QueryResult, RunQueryDsl};

enum Part<'a> {
    Sql(&'a str),
    Int(i64),
    Str(&'a str),
}

/// Pieces of SQL text and bind parameters, in order. Rows are read by
/// name (`QueryableByName`), as with `sql_query`.
pub(crate) struct Cached<'a> {
    parts: Vec<Part<'a>>,
}

impl<'a> Cached<'a> {
    pub(crate) fn new() -> Self {
        Cached { parts: Vec::new() }
    }

    /// SQL text: constant for the statement, never a value.
    pub(crate) fn sql(mut self, s: &'a str) -> Self {
        self.parts.push(Part::Sql(s));
        self
    }

    /// A `BIGINT` parameter.
    pub(crate) fn int(mut self, v: i64) -> Self {
        self.parts.push(Part::Int(v));
        self
    }

    /// Another statement's pieces, e.g. as a subquery.
    pub(crate) fn append(mut self, other: Cached<'a>) -> Self {
        self.parts.extend(other.parts);
        self
    }

    /// A `TEXT` parameter.
    pub(crate) fn text(mut self, v: &'a str) -> Self {
        self.parts.push(Part::Str(v));
        self
    }
}

impl QueryId for Cached<'_> {
    type QueryId = ();
    // Cached by its SQL text.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB> QueryFragment<DB> for Cached<'_>
where
    DB: Backend + HasSqlType<BigInt> + HasSqlType<Text>,
    i64: ToSql<BigInt, DB>,
    str: ToSql<Text, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        for part in &self.parts {
            match part {
                Part::Sql(s) => out.push_sql(s),
                Part::Int(v) => out.push_bind_param::<BigInt, i64>(v)?,
                Part::Str(s) => out.push_bind_param::<Text, str>(s)?,
            }
        }
        Ok(())
    }
}

impl Query for Cached<'_> {
    type SqlType = Untyped;
}

impl<Conn> RunQueryDsl<Conn> for Cached<'_> {}
