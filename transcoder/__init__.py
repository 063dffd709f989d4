"""The transcoder: the quality ladder and the PyAV decode/scale/encode pipeline."""
