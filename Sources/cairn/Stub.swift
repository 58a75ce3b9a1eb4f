import ArgumentParser
struct ControllerCommand: AsyncParsableCommand {}
