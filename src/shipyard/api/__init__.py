"""The words shipyard's objects share on every backend: phases, label/annotation/taint
keys, the status update. The standard library only, so every layer (core included) may
import it."""
