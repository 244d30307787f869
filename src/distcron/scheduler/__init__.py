"""The scheduler core: which slots to launch, skip or mark missed. Pure logic."""
