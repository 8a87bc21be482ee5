"""Output: ``image`` (PGM, PPM and PNG files, written atomically), ``stream`` (images of any
size band by band, resumable) and ``output`` (``render_file``: when to stream, and
``render_frames``)."""
