// Written by hand: the same tables exist on both backends (see migrations/).

diesel::table! {
    accounts (id) {
        id -> BigInt,
        name -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    api_keys (account_id, id) {
        account_id -> BigInt,
        id -> Text,
        key_hash -> Text,
        prefix -> Text,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    trigger_configs (account_id, trigger) {
        account_id -> BigInt,
        trigger -> Text,
        destination -> Text,
        settings -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    events (account_id, id) {
        account_id -> BigInt,
        id -> Text,
        trigger -> Text,
        received_at -> BigInt,
        external_id -> Nullable<Text>,
        payload -> Text,
        /// The event's seq in the pull queue; None when it was not queued.
        seq -> Nullable<BigInt>,
    }
}

diesel::table! {
    pull_queue (account_id, seq) {
        account_id -> BigInt,
        seq -> BigInt,
        trigger -> Text,
        received_at -> BigInt,
        /// The event (`events.id`): its payload is stored there only.
        event_id -> Text,
    }
}

diesel::table! {
    batches (account_id, id) {
        account_id -> BigInt,
        id -> Text,
        consumer -> Text,
        state -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        event_count -> BigInt,
        seqs -> Text,
        closed_count -> BigInt,
        pieces -> Nullable<Text>,
        trigger_counts -> Nullable<Text>,
    }
}

diesel::table! {
    queue_depth (account_id, trigger) {
        account_id -> BigInt,
        trigger -> Text,
        events -> BigInt,
    }
}

diesel::table! {
    paint_contexts (account_id, id) {
        account_id -> BigInt,
        id -> Text,
        created_at -> BigInt,
        last_used_at -> BigInt,
        key_id -> Text,
    }
}

diesel::joinable!(api_keys -> accounts (account_id));
diesel::joinable!(trigger_configs -> accounts (account_id));

diesel::allow_tables_to_appear_in_same_query!(
    accounts,
    api_keys,
    trigger_configs,
    events,
    pull_queue,
    batches,
    queue_depth
);

diesel::table! {
    push_destinations (account_id, trigger, transport) {
        account_id -> BigInt,
        trigger -> Text,
        settings -> Text,
        secret -> Text,
        previous_secret -> Nullable<Text>,
        previous_until -> Nullable<BigInt>,
        state -> Text,
        consecutive_failures -> BigInt,
        paused_until -> BigInt,
        last_error -> Nullable<Text>,
        last_error_at -> Nullable<BigInt>,
        suspended_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        config_version -> BigInt,
        transport -> Text,
    }
}

diesel::table! {
    deliveries (account_id, id) {
        account_id -> BigInt,
        id -> BigInt,
        trigger -> Text,
        event_id -> Text,
        status -> Text,
        attempts -> BigInt,
        failures -> BigInt,
        next_at -> BigInt,
        lease_until -> Nullable<BigInt>,
        claimed_by -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        last_status_code -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        transport -> Text,
        parcel_id -> Nullable<BigInt>,
        event_count -> BigInt,
        period_start -> Nullable<BigInt>,
        label -> Nullable<Text>,
    }
}

diesel::table! {
    delivery_attempts (account_id, id) {
        account_id -> BigInt,
        id -> BigInt,
        delivery_id -> BigInt,
        attempted_at -> BigInt,
        url -> Text,
        status_code -> Nullable<BigInt>,
        latency_ms -> BigInt,
        error -> Nullable<Text>,
        response -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(push_destinations, deliveries, delivery_attempts);

diesel::table! {
    activity (account_id, minute, trigger) {
        account_id -> BigInt,
        minute -> BigInt,
        trigger -> Text,
        ingested -> BigInt,
        pulled -> BigInt,
        delivered -> BigInt,
        failed -> BigInt,
    }
}

diesel::table! {
    server_secrets (name) {
        name -> Text,
        value -> Text,
        created_at -> BigInt,
    }
}
