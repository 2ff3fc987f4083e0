// The runtime alone, the reference of scenario (12): a deno process that loads nothing and waits on
// stdin (no timer, no listener), until its stdin ends.
// Usage: deno run bench/idle_deno.ts
const buf = new Uint8Array(16);
while (await Deno.stdin.read(buf) !== null) { /* wait */ }
