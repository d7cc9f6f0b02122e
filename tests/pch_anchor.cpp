// Gives the PCH object library a source so that other test targets can REUSE_FROM it.
