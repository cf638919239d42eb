"""Run stage: inside one isolated process, load → apply method → train → evaluate, profiled."""
