//! The `terraform_states` table: where each deployment's terraform state is kept.

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::upsert::excluded;

use crate::db::schema::terraform_states;

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = terraform_states)]
pub struct StateLocation {
    pub deployment_id: String,
    pub backend_type: String,
    pub backend_config: serde_json::Value,
    pub workspace: String,
}

/// Records (or updates) where a deployment's state lives, bumping `state_version` on each run.
pub fn record(conn: &mut PgConnection, loc: &StateLocation) -> QueryResult<usize> {
    diesel::insert_into(terraform_states::table)
        .values(loc)
        .on_conflict(terraform_states::deployment_id)
        .do_update()
        .set((
            terraform_states::backend_type.eq(excluded(terraform_states::backend_type)),
            terraform_states::backend_config.eq(excluded(terraform_states::backend_config)),
            terraform_states::workspace.eq(excluded(terraform_states::workspace)),
            terraform_states::state_version.eq(terraform_states::state_version + 1),
            terraform_states::last_modified.eq(diesel::dsl::now),
        ))
        .execute(conn)
}
