"""The local control plane, data plane and demo: used by people and by the e2e tests."""
