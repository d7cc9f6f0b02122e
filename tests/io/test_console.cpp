#include <cxrl/io/interrupt.hpp>
#include <cxrl/io/progress.hpp>

#include <catch2/catch.hpp>

#include <csignal>
#include <cstdio>

TEST_CASE("progress prints plain lines with counts when not on a terminal") {
  std::FILE* f = std::tmpfile();
  cxrl::io::Progress p("finetune", 4, false, f);
  p.plain_every_s = 0.0;
  p.update(1, "reward 0.10");
  p.update(4, "reward 0.30");
  std::rewind(f);
  char buf[512] = {};
  const auto n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  const std::string s(buf, n);
  CHECK_THAT(s, Catch::Contains("finetune 1/4  reward 0.10") && Catch::Contains("finetune 4/4  reward 0.30"));
  CHECK(s.find('\r') == std::string::npos);
}

TEST_CASE("quiet progress prints nothing") {
  std::FILE* f = std::tmpfile();
  cxrl::io::Progress p("x", 2, true, f);
  p.update(2);
  CHECK(std::ftell(f) == 0);
  std::fclose(f);
}

TEST_CASE("SIGINT sets the interrupt flag instead of killing the process") {
  cxrl::io::reset_interrupt();
  cxrl::io::install_interrupt_handler();
  CHECK_FALSE(cxrl::io::interrupted());
  std::raise(SIGINT);
  CHECK(cxrl::io::interrupted());
  cxrl::io::reset_interrupt();
  std::signal(SIGINT, SIG_DFL);
}
