"""Programs that run ON the host, with the host's own Python (3.6 and up, standard library
only): shipped as files by a deploy, never imported by the control side's code paths."""
