"""Small helpers that several parts share: content hashes (``hashing``), files that appear whole or not at
all (``atomic``), where this process stands among a run's processes (``distributed``), torch's CPU
threads for a block (``threads``) and the progress bar of long steps (``progress``)."""
