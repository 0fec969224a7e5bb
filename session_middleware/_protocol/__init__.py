"""Pure knowledge of what is stored and sent, with no I/O: the Redis key layout, the Lua
scripts and the commands that call them, the record and cookie codecs, every TTL."""
