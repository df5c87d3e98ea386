//! PostgreSQL bulk inserts: `INSERT … SELECT * FROM unnest($1, $2, …)`
//! with one array per column. The statement's text is the same whatever
//! the number of rows, so diesel caches it as a prepared statement and
//! PostgreSQL parses and plans it once per connection, and a chunk of 1,000
//! rows binds a handful of arrays instead of thousands of parameters (a
//! multi-row `VALUES` list is a new statement for every row count, and
//! diesel never caches it).

use std::marker::PhantomData;

use diesel::expression::TypedExpressionType;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Bool, Nullable, SqlType, Text};
use diesel::{PgConnection, QueryResult, RunQueryDsl};

/// One column's values.
pub(crate) enum Col<'a> {
    Int(Vec<i64>),
    OptInt(Vec<Option<i64>>),
    Str(Vec<&'a str>),
    OptStr(Vec<Option<&'a str>>),
    Bool(Vec<bool>),
}

/// Binds one column's values as an array parameter.
fn push_col<'b>(out: &mut AstPass<'_, 'b, Pg>, col: &'b Col<'_>) -> QueryResult<()> {
    match col {
        Col::Int(v) => out.push_bind_param::<Array<BigInt>, _>(v),
        Col::OptInt(v) => out.push_bind_param::<Array<Nullable<BigInt>>, _>(v),
        Col::Str(v) => out.push_bind_param::<Array<Text>, _>(v),
        Col::OptStr(v) => out.push_bind_param::<Array<Nullable<Text>>, _>(v),
        Col::Bool(v) => out.push_bind_param::<Array<Bool>, _>(v),
    }
}

/// `INSERT INTO {table} ({columns}) SELECT * FROM unnest(…) {tail}`.
pub(crate) struct Unnest<'a> {
    table: &'static str,
    columns: &'static str,
    tail: &'static str,
    cols: Vec<Col<'a>>,
}

impl<'a> Unnest<'a> {
    /// `columns` names the columns in the order of `cols`; `tail` follows
    /// the select (e.g. `ON CONFLICT DO NOTHING RETURNING id`).
    pub(crate) fn new(table: &'static str, columns: &'static str, cols: Vec<Col<'a>>, tail: &'static str) -> Self {
        Unnest {
            table,
            columns,
            tail,
            cols,
        }
    }
}

impl QueryId for Unnest<'_> {
    type QueryId = ();
    // Cached by its SQL text (constant for a given table, columns and tail).
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for Unnest<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("INSERT INTO ");
        out.push_sql(self.table);
        out.push_sql(" (");
        out.push_sql(self.columns);
        out.push_sql(") SELECT * FROM unnest(");
        for (i, col) in self.cols.iter().enumerate() {
            if i > 0 {
                out.push_sql(", ");
            }
            push_col(&mut out, col)?;
        }
        out.push_sql(") ");
        out.push_sql(self.tail);
        Ok(())
    }
}

/// What `RETURNING` gives back: one text column (an id).
impl Query for Unnest<'_> {
    type SqlType = Text;
}

impl RunQueryDsl<PgConnection> for Unnest<'_> {}

/// A PostgreSQL statement whose parameters are arrays: `sql` holds one `?`
/// per element of `cols`, in order (and no other `?`). Like [`Unnest`], its
/// text is constant, so it is prepared once per connection. `ST` is the
/// SQL type of the row it returns.
pub(crate) struct Arrays<'a, ST> {
    sql: &'static str,
    cols: Vec<Col<'a>>,
    row: PhantomData<ST>,
}

impl<'a, ST> Arrays<'a, ST> {
    pub(crate) fn new(sql: &'static str, cols: Vec<Col<'a>>) -> Self {
        debug_assert_eq!(sql.matches('?').count(), cols.len());
        Arrays {
            sql,
            cols,
            row: PhantomData,
        }
    }
}

impl<ST> QueryId for Arrays<'_, ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<ST> QueryFragment<Pg> for Arrays<'_, ST> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let mut parts = self.sql.split('?');
        out.push_sql(parts.next().unwrap_or_default());
        for (col, part) in self.cols.iter().zip(parts) {
            push_col(&mut out, col)?;
            out.push_sql(part);
        }
        Ok(())
    }
}

impl<ST: SqlType + TypedExpressionType> Query for Arrays<'_, ST> {
    type SqlType = ST;
}

impl<ST> RunQueryDsl<PgConnection> for Arrays<'_, ST> {}
