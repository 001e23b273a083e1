//! Several writes as one statement: `WITH w0 AS (<insert>), w1 AS (<insert>) <main>`.
//! PostgreSQL runs every data-modifying part of a `WITH` exactly once and to completion, and
//! checks foreign keys at the end of the whole statement, so rows that reference each other
//! can be written together. One statement outside a transaction is atomic on its own: one
//! round trip and one commit instead of `BEGIN`, a statement per table and `COMMIT`.
//!
//! Prepared-statement caching is decided by the parts: diesel caches the statement by its SQL
//! when every part is cacheable (single-row inserts are; multi-row ones are not).

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

pub struct With<'a, M> {
    parts: Vec<Box<dyn QueryFragment<Pg> + Send + 'a>>,
    main: M,
}

impl<'a, M> With<'a, M> {
    /// `main` runs after (and sees nothing of) `parts`; its result is the statement's.
    pub fn new(parts: Vec<Box<dyn QueryFragment<Pg> + Send + 'a>>, main: M) -> With<'a, M> {
        With { parts, main }
    }
}

impl<M: QueryFragment<Pg>> QueryFragment<Pg> for With<'_, M> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        for (i, part) in self.parts.iter().enumerate() {
            out.push_sql(if i == 0 { "WITH " } else { ", " });
            out.push_sql(&format!("w{i} AS ("));
            part.walk_ast(out.reborrow())?;
            out.push_sql(")");
        }
        if !self.parts.is_empty() {
            out.push_sql(" ");
        }
        self.main.walk_ast(out.reborrow())
    }
}

impl<M> QueryId for With<'_, M> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<M: Query> Query for With<'_, M> {
    type SqlType = M::SqlType;
}

impl<M, Conn> RunQueryDsl<Conn> for With<'_, M> {}
