# The origins of deploy/compose.yaml (mounted as origins.vcl in the edge container).
# first_byte_timeout: above the origin's longest hold (3 target durations, 30 s at most).
backend origin1 {
    .host = "origin-1";
    .port = "8000";
    .connect_timeout = 1s;
    .first_byte_timeout = 35s;
    .between_bytes_timeout = 10s;
}

backend origin2 {
    .host = "origin-2";
    .port = "8000";
    .connect_timeout = 1s;
    .first_byte_timeout = 35s;
    .between_bytes_timeout = 10s;
}

sub vcl_init {
    new origins = directors.round_robin();
    origins.add_backend(origin1);
    origins.add_backend(origin2);
}
