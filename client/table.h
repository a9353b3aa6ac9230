// Table: left-aligned text columns for the CLI's human output. Thread-compatible.
#ifndef REBOUND_CLIENT_TABLE_H_
#define REBOUND_CLIENT_TABLE_H_

#include <ostream>
#include <string>
#include <vector>

namespace rebound::client {

class Table {
 public:
  explicit Table(std::vector<std::string> header);

  // A row shorter than the header is padded with empty cells.
  void AddRow(std::vector<std::string> row);
  size_t size() const { return rows_.size(); }

  // Header and rows, columns two spaces apart; no trailing spaces.
  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace rebound::client

#endif  // REBOUND_CLIENT_TABLE_H_
