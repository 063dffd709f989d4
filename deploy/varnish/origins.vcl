# The origin processes behind this edge: the default of `deploy/Procfile` (two origins on
# 127.0.0.1:8001 and :8002). `manage.py cluster` writes its own copy for other counts, and
# the compose file mounts compose-origins.vcl in its place.
#
# first_byte_timeout: above the origin's longest hold (a blocking playlist waits up to three
# target durations: 6 s at GOLIVE_HLS_TARGET_DURATION=2, 30 s at the longest, 10).
backend origin1 {
    .host = "127.0.0.1";
    .port = "8001";
    .connect_timeout = 1s;
    .first_byte_timeout = 35s;
    .between_bytes_timeout = 10s;
}

backend origin2 {
    .host = "127.0.0.1";
    .port = "8002";
    .connect_timeout = 1s;
    .first_byte_timeout = 35s;
    .between_bytes_timeout = 10s;
}

sub vcl_init {
    new origins = directors.round_robin();
    origins.add_backend(origin1);
    origins.add_backend(origin2);
}
