"""`denoise-train` as installed: train/'s commands plus `adapt`.

`adapt` lives in export/ because it reads a user's folder with the runtime's decoders and ends
in the verified export, and train/ may import neither (tests/test_boundary.py); the command
still belongs with training, so the installed `denoise-train` is assembled here, where both
sides may be imported.
"""

from __future__ import annotations

from denoise_export.adapt_cli import adapt_command
from denoise_train.cli import app

app.command("adapt")(adapt_command)
