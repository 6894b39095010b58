"""What a training program calls from inside a rank; the standard library only, so
that `import shipyard` stays cheap in every job."""
