"""The secrets service: per-stack envelope encryption and the decryption audit trail."""
