// @generated automatically by Diesel CLI.

diesel::table! {
    deployment_logs (deployment_id, seq) {
        deployment_id -> Text,
        seq -> Int8,
        at -> Timestamptz,
        stream -> Text,
        line -> Text,
        run_id -> Text,
    }
}

diesel::table! {
    deployments (deployment_id) {
        deployment_id -> Text,
        provider_type -> Text,
        cloud_provider -> Text,
        template_name -> Text,
        resource_group -> Nullable<Text>,
        subscription_id -> Nullable<Text>,
        location -> Nullable<Text>,
        status -> Text,
        operation -> Text,
        parameters -> Jsonb,
        outputs -> Nullable<Jsonb>,
        error_message -> Nullable<Text>,
        progress -> Int2,
        attempts -> Int4,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamptz>,
        cancel_requested_at -> Nullable<Timestamptz>,
        idempotency_key -> Nullable<Text>,
        created_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        completed_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
        applied_run_id -> Nullable<Text>,
        drift -> Nullable<Jsonb>,
        requested_by -> Nullable<Text>,
        management_group -> Nullable<Text>,
    }
}

diesel::table! {
    audit_events (audit_id) {
        audit_id -> Int8,
        at -> Timestamptz,
        actor -> Text,
        role -> Nullable<Text>,
        action -> Text,
        route -> Text,
        target -> Nullable<Text>,
        run_id -> Nullable<Text>,
        outcome -> Text,
        status_code -> Int2,
        error_code -> Nullable<Text>,
        request_id -> Nullable<Text>,
        client_addr -> Nullable<Text>,
    }
}

diesel::table! {
    webhooks (webhook_id) {
        webhook_id -> Text,
        url -> Text,
        events -> Array<Text>,
        secret_sealed -> Bytea,
        created_by -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_events (event_id) {
        event_id -> Text,
        event_type -> Text,
        deployment_id -> Nullable<Text>,
        run_id -> Nullable<Text>,
        payload -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_deliveries (delivery_id) {
        delivery_id -> Int8,
        webhook_id -> Text,
        event_id -> Text,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamptz>,
        last_attempt_at -> Nullable<Timestamptz>,
        last_status_code -> Nullable<Int2>,
        last_error -> Nullable<Text>,
        response_excerpt -> Nullable<Text>,
        delivered_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    runs (run_id) {
        run_id -> Text,
        queue_seq -> Int8,
        deployment_id -> Text,
        kind -> Text,
        status -> Text,
        auto_apply -> Bool,
        approved_at -> Nullable<Timestamptz>,
        parameters -> Jsonb,
        template_hash -> Nullable<Text>,
        base_template_hash -> Nullable<Text>,
        template_version -> Nullable<Text>,
        plan_summary -> Nullable<Jsonb>,
        saved_plan -> Nullable<Bytea>,
        outputs -> Nullable<Jsonb>,
        error_message -> Nullable<Text>,
        progress -> Int2,
        attempts -> Int4,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamptz>,
        cancel_requested_at -> Nullable<Timestamptz>,
        requested_by -> Nullable<Text>,
        approved_by -> Nullable<Text>,
        created_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        completed_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    template_sources (hash) {
        hash -> Text,
        source -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    terraform_states (deployment_id) {
        deployment_id -> Text,
        backend_type -> Text,
        backend_config -> Jsonb,
        workspace -> Text,
        state_version -> Int4,
        last_modified -> Timestamptz,
    }
}

diesel::joinable!(deployment_logs -> deployments (deployment_id));
diesel::joinable!(terraform_states -> deployments (deployment_id));
diesel::joinable!(runs -> deployments (deployment_id));
diesel::joinable!(webhook_deliveries -> webhooks (webhook_id));
diesel::joinable!(webhook_deliveries -> webhook_events (event_id));

diesel::allow_tables_to_appear_in_same_query!(
    audit_events,
    deployment_logs,
    deployments,
    runs,
    template_sources,
    terraform_states,
    webhook_deliveries,
    webhook_events,
    webhooks,
);
