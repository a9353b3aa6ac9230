// Opens --streams WatchSync streams on one job (all open at once, on the callback API), waits
// for each stream's first event, holds them --hold-ms, then cancels them all and waits until
// every one has ended. Prints how many opened and how many were refused, and how they ended,
// for the memory measurement in docs/operations.md ("Sizing").
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "rebound/v1/rebound.grpc.pb.h"

namespace {

class Stream final : public grpc::ClientReadReactor<rebound::v1::SyncEvent> {
 public:
  Stream(rebound::v1::Rebound::Stub& stub, const std::string& job_id, std::atomic<int>& opened,
         std::atomic<int>& done, std::atomic<int>& refused)
      : opened_(opened), done_(done), refused_(refused) {
    req_.set_job_id(job_id);
    stub.async()->WatchSync(&ctx_, &req_, this);
    StartRead(&event_);
    StartCall();
  }
  void Cancel() { ctx_.TryCancel(); }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (!first_) {
      first_ = true;
      opened_.fetch_add(1);
    }
    StartRead(&event_);
  }
  void OnDone(const grpc::Status& s) override {
    if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) refused_.fetch_add(1);
    done_.fetch_add(1);
  }

 private:
  grpc::ClientContext ctx_;
  rebound::v1::WatchSyncRequest req_;
  rebound::v1::SyncEvent event_;
  bool first_ = false;
  std::atomic<int>& opened_;
  std::atomic<int>& done_;
  std::atomic<int>& refused_;
};

bool WaitFor(const std::atomic<int>& a, const std::atomic<int>& b, int want, int seconds) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (a.load() + b.load() < want) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli("WatchSync streams for the memory measurement");
  std::string target;
  std::string job_id;
  int streams = 20000;
  int hold_ms = 3000;
  int channels = 8;
  cli.add_option("--target", target, "gRPC target host:port")->required();
  cli.add_option("--job", job_id, "job id to watch (keep it unfinished)")->required();
  cli.add_option("--streams", streams, "streams to open")->capture_default_str();
  cli.add_option("--hold-ms", hold_ms, "time all streams stay open")->capture_default_str();
  cli.add_option("--channels", channels, "gRPC channels (HTTP/2 connections)")
      ->capture_default_str();
  CLI11_PARSE(cli, argc, argv);

  std::vector<std::unique_ptr<rebound::v1::Rebound::Stub>> stubs;
  for (int c = 0; c < channels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", c);  // distinct channels, not one shared subchannel
    stubs.push_back(rebound::v1::Rebound::NewStub(
        grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args)));
  }
  std::atomic<int> opened{0}, done{0}, refused{0};
  std::vector<std::unique_ptr<Stream>> all;
  all.reserve(streams);
  for (int i = 0; i < streams; ++i) {
    all.push_back(std::make_unique<Stream>(*stubs[i % channels], job_id, opened, done, refused));
  }
  const bool up = WaitFor(opened, done, streams, 120);
  std::printf("opened %d, ended early %d (refused %d)%s\n", opened.load(), done.load(),
              refused.load(), up ? "" : " (timed out)");
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::milliseconds(hold_ms));
  for (auto& s : all) s->Cancel();
  const std::atomic<int> zero{0};
  const bool ended = WaitFor(done, zero, streams, 120);
  std::printf("cancelled; %d ended%s\n", done.load(), ended ? "" : " (timed out)");
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::milliseconds(hold_ms));
  return ended ? 0 : 1;
}
