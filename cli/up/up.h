// weftctl commands for the local mesh: up, down, label, apply, delete, logs, exec, upgrade.
// Registered in cli/commands.cc. Every command takes --name NAME (default "weft") and --state-root
// DIR (see cli/up/state.h) to pick the mesh.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace weft::up {

int UpMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int DownMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int LabelMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int ApplyMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int DeleteMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int LogsMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int UpgradeMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int ExecMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace weft::up
