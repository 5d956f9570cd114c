"""The pure decision core: phases, steps, promotion, rollback."""
