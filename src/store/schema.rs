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
    }
}

diesel::table! {
    pull_queue (account_id, seq) {
        account_id -> BigInt,
        seq -> BigInt,
        trigger -> Text,
        received_at -> BigInt,
        payload -> Text,
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
    }
}

diesel::table! {
    paint_contexts (account_id, id) {
        account_id -> BigInt,
        id -> Text,
        created_at -> BigInt,
        last_used_at -> BigInt,
    }
}

diesel::joinable!(api_keys -> accounts (account_id));
diesel::joinable!(trigger_configs -> accounts (account_id));

diesel::allow_tables_to_appear_in_same_query!(accounts, api_keys, trigger_configs, events, pull_queue, batches);
