"""Media in: decoding files (PyAV), converting audio frames, resizing video frames to the model's
image, and the rule that says whether audio blocks continue one another.

Shared by capture (``livetok.streams``), the tokenizers and the commands, so that neither of the
first two imports the other. Nothing is imported here: PyAV loads only with the module that needs it.

* ``decode``: opening and decoding files, one-line MediaErrors, integer media time;
* ``audioconv``: audio frames of any format -> ``[C, N]`` float32;
* ``frames``: video frames of any size -> the model's square RGB image (crop, pad, stretch);
"""
