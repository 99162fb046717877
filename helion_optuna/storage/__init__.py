"""Stage 3, storage: studies in a database, which are also the config cache.

``records`` names everything the project writes into Optuna's storage (every stage writes
through it); ``opening`` opens a storage from a URL, ``sql`` reads a study's attributes
straight from its database, ``batched_storage`` is Optuna's RDB storage writing a trial in a
few commits; ``fingerprint`` makes a cache key, ``cache`` is the study of a key (the cache
entry), ``history`` reads a kernel's earlier studies (the prior of a tuning, the measured
times of export-configs); ``study_file`` exports and imports studies, ``artifacts`` keeps
kernel sources, ``study_note`` writes a study's note. Only this stage touches Optuna's private API
(``internals`` and ``batched_storage``).
"""
