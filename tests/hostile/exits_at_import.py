# Hostile: calls sys.exit while being loaded.
import sys

sys.exit(3)
