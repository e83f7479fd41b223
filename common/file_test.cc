#include "common/file.h"

#include <sys/stat.h>

#include <filesystem>

#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace weft {
namespace {

TEST(File, WriteAtomicThenReadRoundTripsBytesAndMode) {
  testing::TempDir dir;
  std::string path = dir.path() + "/f";
  std::string data("a\0b\nc", 5);
  ASSERT_TRUE(WriteFileAtomic(path, data, 0600).ok());
  auto got = ReadFile(path);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, data);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Replacing keeps exactly one file: no temp file is left beside it.
  ASSERT_TRUE(WriteFileAtomic(path, "second", 0644).ok());
  EXPECT_EQ(*ReadFile(path), "second");
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(File, ReadsLargeFilesWhole) {
  testing::TempDir dir;
  std::string big(300000, 'x');
  big[299999] = 'y';
  ASSERT_TRUE(WriteFileAtomic(dir.path() + "/big", big).ok());
  EXPECT_EQ(*ReadFile(dir.path() + "/big"), big);
}

TEST(File, MissingFileIsNotFoundAndNamesThePath) {
  testing::TempDir dir;
  auto got = ReadFile(dir.path() + "/nope");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(got.status().message().find("/nope"), std::string::npos);
}

TEST(File, ReadingADirectoryIsAnError) {
  testing::TempDir dir;
  EXPECT_FALSE(ReadFile(dir.path()).ok());
}

TEST(File, WriteIntoMissingDirectoryFailsCleanly) {
  testing::TempDir dir;
  auto st = WriteFileAtomic(dir.path() + "/no/such/dir/f", "x");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("/no/such/dir/f"), std::string::npos);
}

}  // namespace
}  // namespace weft
