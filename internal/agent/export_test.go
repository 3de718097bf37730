package agent

// HealthProbing reports whether the agent runs health checks for name.
func HealthProbing(a *Agent, name string) bool {
	a.health.mu.Lock()
	defer a.health.mu.Unlock()
	_, ok := a.health.probers[name]
	return ok
}

// HealthProbers counts the instances whose checks run.
func HealthProbers(a *Agent) int {
	a.health.mu.Lock()
	defer a.health.mu.Unlock()
	return len(a.health.probers)
}
