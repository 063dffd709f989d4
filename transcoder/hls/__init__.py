"""HLS text: LL-HLS media playlists and the multivariant playlist, as pure functions."""
